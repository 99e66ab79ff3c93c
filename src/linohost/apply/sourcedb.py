"""The database of a project that `linohost adopt` takes over, as its settings name it:
counted (rows per table), asked for its first admin, and dumped with the project's own
credentials, never with the host's admin rights; and the database of the site made
from it, counted the same way."""

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pymysql
from psycopg import sql as pgsql

from ..backends.db import backend
from ..errors import UsageError

#: Django's database engines (the last part of ENGINE) and linohost's names of them.
ENGINES = {"sqlite3": "sqlite", "postgresql": "postgresql",
           "postgresql_psycopg2": "postgresql", "mysql": "mysql"}
#: The tables of the database connected to, per engine.
TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
    "mysql": "SELECT table_name FROM information_schema.tables "
             "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
}
#: The first active admin of a Lino site (user type 900); {} is the parameter marker.
FIRST_ADMIN = ("SELECT username FROM users_user WHERE user_type = {} AND username != '' "
               "ORDER BY id")
ERRORS = (sqlite3.Error, psycopg.Error, pymysql.Error)


def quoted(engine, con, name):
    """*name* quoted as an identifier of *engine* (a table name cannot be a parameter)."""
    if engine == "postgresql":
        return pgsql.Identifier(name).as_string(con)
    q = "`" if engine == "mysql" else '"'
    return q + name.replace(q, q + q) + q


@dataclass(frozen=True)
class Database:
    """A database: its engine, its name (SQLite: the file's path) and, for a foreign
    one, how its own user reaches it (none: the host's admin, a site of linohost's)."""
    engine: str
    name: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def of_settings(cls, found, project):
        """The default database of *project* whose settings read as *found* (the probe).
        No HOST means the server on this machine (reached over TCP: as root, a Unix
        socket would authenticate root, not the project's user)."""
        d = found["database"]
        engine = ENGINES.get(d["ENGINE"].rsplit(".", 1)[-1])
        if engine is None:
            raise UsageError(f"{project}: adopting a {d['ENGINE'] or 'missing'} database is "
                             f"not supported (SQLite, PostgreSQL, MariaDB/MySQL)")
        if engine == "sqlite":
            path = Path(d["NAME"])
            return cls("sqlite", str(path if path.is_absolute() else project / path))
        if d["PORT"] and not d["PORT"].isdigit():
            raise UsageError(f"{project}: its database PORT {d['PORT']!r} is not a number")
        return cls(engine, d["NAME"], d["HOST"] or "127.0.0.1", int(d["PORT"] or 0),
                   d["USER"], d["PASSWORD"])

    @classmethod
    def of_site(cls, host, site):
        """The database of linohost's *site*."""
        if site.db == "sqlite":
            return cls("sqlite", str(host.site_dir(site.name) / "default.db"))
        return cls(site.db, site.db_name)

    def describe(self):
        if self.engine == "sqlite":
            return self.name
        return f"{self.engine} database {self.name} at {self.host}:{self.port} as {self.user}"

    def backend(self, cfg):
        """linohost's backend for it, logged in as its own user where it has one."""
        if self.engine == "sqlite" or not self.user:
            return backend(self.engine, cfg)
        e = self.engine
        return backend(e, cfg.replace(**{
            f"{e}__host": self.host, f"{e}__port": self.port or cfg[f"{e}.port"],
            f"{e}__admin_user": self.user, f"{e}__admin_password": self.password}))

    def dump(self, cfg, path):
        """Its engine's native dump (SQLite: a consistent copy) into *path*."""
        self.backend(cfg).dump(self.name, path)

    def tables(self, cfg):
        """{table: rows}."""
        def count(con, cur):
            cur.execute(TABLES[self.engine])
            out = {}
            for (table,) in cur.fetchall():
                cur.execute("SELECT COUNT(*) FROM " + quoted(self.engine, con, table))
                out[table] = cur.fetchone()[0]
            return out
        return self._read(cfg, count)

    def first_admin(self, cfg):
        """The user name of its first active admin, or None (none, or no users table)."""
        def first(con, cur):
            cur.execute(FIRST_ADMIN.format("?" if self.engine == "sqlite" else "%s"), ("900",))
            row = cur.fetchone()
            return row[0] if row else None
        try:
            return self._read(cfg, first)
        except UsageError:
            return None

    def _read(self, cfg, what):
        try:
            con = self.backend(cfg).connect(self.name)
        except ERRORS as e:
            raise UsageError(f"cannot read the database {self.describe()}: {e}") from None
        try:
            return what(con, con.cursor())
        except ERRORS as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"cannot read the database {self.describe()}: {first}") from None
        finally:
            con.close()
