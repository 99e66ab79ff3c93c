"""One lock per host root: changes to a host are serialised."""

import fcntl
import os
from contextlib import contextmanager


@contextmanager
def host_lock(host, on_wait=None):
    """Hold the exclusive lock of *host*; call *on_wait()* if someone else has it."""
    host.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
