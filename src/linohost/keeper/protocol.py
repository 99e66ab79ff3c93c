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
