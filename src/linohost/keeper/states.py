"""The states of the keeper's processes and which changes between them are allowed.

As supervisor's processes do, every site and every zygote is in one named state,
and every transition is checked against its table. A site::

    sleeping --first connection--> starting --ready--> running --idle/stop--> stopping
       ^                              |                   |                      |
       |                              +--boot failed--> failed (backoff)         |
       +------------------------------ worker exited ----------------------------+
    (running -> failed: killed over its memory limit)
"""

SLEEPING, STARTING, RUNNING, STOPPING, FAILED = "sleeping", "starting", "running", "stopping", "failed"
STATES = (SLEEPING, STARTING, RUNNING, STOPPING, FAILED)

ALLOWED = {
    SLEEPING: {STARTING},
    STARTING: {RUNNING, FAILED, STOPPING, SLEEPING},
    RUNNING: {STOPPING, SLEEPING, FAILED},  # SLEEPING: it left (idle) or died; FAILED:
                                            # killed for its memory ([limits])
    STOPPING: {SLEEPING},
    FAILED: {STARTING, SLEEPING},           # SLEEPING: its files changed, try afresh
}


# A zygote (keeper/zygotes.py)::
#
#     stopped --start--> starting --first word "ready"--> ready --stop--> stopped
#                           |                               |
#                           +--failed, exited--> failed <---+ (no answer to a fork, exited)
#                                                  |
#                                                  +--backoff over--> starting
Z_STOPPED, Z_STARTING, Z_READY, Z_FAILED = "stopped", "starting", "ready", "failed"
ZYGOTE_STATES = (Z_STOPPED, Z_STARTING, Z_READY, Z_FAILED)

ZYGOTE_ALLOWED = {
    Z_STOPPED: {Z_STARTING},
    Z_STARTING: {Z_READY, Z_FAILED, Z_STOPPED},
    Z_READY: {Z_FAILED, Z_STOPPED},
    Z_FAILED: {Z_STARTING, Z_STOPPED},
}


class BadTransition(RuntimeError):
    pass


def check(old, new, allowed=ALLOWED):
    """Raise BadTransition unless *allowed* (a site's table unless told) lets a process
    go from state *old* to *new*."""
    if new not in allowed[old]:
        raise BadTransition(f"{old} -> {new}")


def backoff(failures, cap=60, first=1):
    """Seconds to wait before the next start after *failures* failed starts in a row:
    *first* after the first, doubled after each further one, at most *cap*."""
    return min(cap, first * 2 ** max(0, failures - 1))
