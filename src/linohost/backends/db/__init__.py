"""Database backends: one database and one user per site on a server, or SQLite."""

from .mysql import MySQL
from .postgresql import PostgreSQL
from .sqlite import SQLite

ENGINES = ("sqlite", "postgresql", "mysql")


def backend(engine, cfg):
    """The backend for *engine* configured from the host config *cfg*."""
    return {"sqlite": SQLite, "postgresql": PostgreSQL, "mysql": MySQL}[engine](cfg)
