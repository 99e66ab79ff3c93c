"""Writing files safely: every live file is replaced atomically."""

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write(path, text, mode=0o644):
    """Write *text* to *path* via a temp file in the same directory, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_secret(path, text, owner=None):
    """Write an owner-only (0600) file; chown it to *owner* ``(uid, gid)``."""
    atomic_write(path, text + "\n", mode=0o600)
    if owner:
        os.chown(path, *owner)


def remove_tree(path):
    """Remove a directory tree or a file if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

