"""One lock per host root: changes to a host are serialised."""

import fcntl
import os
from contextlib import contextmanager


@contextmanager
def host_lock(host, on_wait=None, wait=True):
    """Hold the exclusive lock of *host*; call *on_wait()* if someone else has it.

    With ``wait=False`` it does not wait: it yields whether it got the lock."""
    host.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing releases the lock
