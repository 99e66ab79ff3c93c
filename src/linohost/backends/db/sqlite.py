"""SQLite: the database is a file in the project directory; nothing to create."""

import os
import sqlite3
from pathlib import Path


class SQLite:
    engine = "sqlite"
    server = False
    dump_name = "db.sqlite3"

    def __init__(self, cfg):
        pass

    def check(self):
        pass

    def exists(self, name):
        return False

    def clash(self, name):
        return None

    def create(self, name, password, note=""):
        pass

    def mark(self, name, note):
        pass

    def drop(self, name):
        pass

    @staticmethod
    def connect(path):
        """A read-only DB-API connection to the database file *path*."""
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    @staticmethod
    def dump(path, dest):
        """A consistent copy of the database file *path*, even while it is in use."""
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(dest)
        try:
            with dst:
                src.backup(dst)
        finally:
            src.close()
            dst.close()

    @staticmethod
    def load(path, source, owner=None):
        """Replace the database file *path* by *source*, atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.restoring")
        tmp.write_bytes(Path(source).read_bytes())
        os.chmod(tmp, 0o640)
        if owner:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
