"""The states of a site under the keeper and which changes between them are allowed.

As supervisor's processes do, every site is in one named state and every
transition is checked and logged::

    sleeping --first connection--> starting --ready--> running --idle/stop--> stopping
       ^                              |                   |                      |
       |                              +--boot failed--> failed (backoff)         |
       +------------------------------ worker exited ----------------------------+
"""

SLEEPING, STARTING, RUNNING, STOPPING, FAILED = "sleeping", "starting", "running", "stopping", "failed"
STATES = (SLEEPING, STARTING, RUNNING, STOPPING, FAILED)

ALLOWED = {
    SLEEPING: {STARTING},
    STARTING: {RUNNING, FAILED, STOPPING, SLEEPING},
    RUNNING: {STOPPING, SLEEPING},          # SLEEPING: it left by itself (idle) or died
    STOPPING: {SLEEPING},
    FAILED: {STARTING, SLEEPING},           # SLEEPING: its files changed, try afresh
}


class BadTransition(RuntimeError):
    pass


def check(old, new):
    """Raise BadTransition unless a site may go from state *old* to *new*."""
    if new not in ALLOWED[old]:
        raise BadTransition(f"{old} -> {new}")


def backoff(failures, cap=60):
    """Seconds to wait before the next start after *failures* failed starts in a row."""
    return min(cap, 2 ** max(0, failures - 1))
