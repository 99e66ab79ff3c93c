"""What the keeper and the processes it starts say to each other, defined once.

Shipped (see :mod:`.shipped`): plain Python that imports nothing, imported by linohost
as ``linohost.keeper.protocol`` and by the worker and the zygote as ``linohost_protocol``.

A worker's start request is a dict: ``site``, ``project``, ``keeper_pid``, ``threads``,
``idle_timeout``, ``grace``, ``jobs`` (``{"for_jobs", "min_interval"}`` or None) and,
for the exactness tests only, ``probe``. A plain start gets it as JSON in
``LINOHOST_START``; a zygote gets it in a fork request, with ``uid``, ``gid`` and
``environ`` (whom the worker becomes) or ``command`` (a warm command instead).
"""

#: Exit codes of a worker or a warm command besides its own: the site cannot be loaded
#: (the keeper backs off before it tries again) ...
BOOT_FAILED = 3
#: ... and a worker forked from a zygote is not exactly its site (the keeper starts it
#: plainly; the status pipe says why).
INEXACT = 4

#: The variable of a plain start's request.
START = "LINOHOST_START"

# -- the status pipe: one line each, a word and what follows it -----------------------
#: A worker serves (its first line; the keeper counts its start from here).
READY = "ready"
#: ``stats REQUESTS LAST``: requests served, when the last one started (epoch; 0: none).
STATS = "stats"
#: ``done 1XX 2XX 3XX 4XX 5XX SECONDS B0 .. Bn``: the requests that ended, by the class of
#: their answer, the seconds they took in all, and how many took at most
#: ``LATENCY_BUCKETS[i]`` seconds (Bn: longer); all since the worker started.
DONE = "done"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: ``live OPEN SENT``: websockets open, notifications sent (sites with live features).
LIVE = "live"
#: ``next_job EPOCH`` or ``next_job -``: when its next background task is due.
NEXT_JOB = "next_job"
#: A fork became its site (a warm command's zygote says so before the command runs).
FORKED = "forked"
#: ``variant DIGEST TABLES``: a fork's data differ from its zygote's (the keeper may
#: make a zygote of them); TABLES is JSON without spaces.
VARIANT = "variant"
#: ``inexact WHY``: a fork is not exactly its site (it then exits with INEXACT).
NOT_EXACT = "inexact"


def say(word, *args):
    """One status line: *word* and *args*, separated by spaces."""
    return " ".join((word, *map(str, args))) + "\n"


def heard(line):
    """A status line (str or bytes) as (word, the rest)."""
    if isinstance(line, bytes):
        line = line.decode(errors="replace")
    word, _, rest = line.strip().partition(" ")
    return word, rest
