"""PostgreSQL: a database owned by a role of the same name, per site."""

from ...errors import ServiceUnavailable
from ...imports import lazy
from .tools import run_tool

psycopg = lazy("psycopg")


class PostgreSQL:
    engine = "postgresql"
    server = True
    dump_name = "db.pgdump"

    def __init__(self, cfg):
        self.host, self.port = cfg["postgresql.host"], cfg["postgresql.port"]
        self.user, self.password = cfg["postgresql.admin_user"], cfg["postgresql.admin_password"]

    def connect_args(self):
        return {"host": self.host, "port": self.port}

    def _connect(self, dbname="postgres"):
        try:
            return psycopg.connect(host=self.host, port=self.port, user=self.user,
                                   password=self.password or None, dbname=dbname,
                                   autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ServiceUnavailable(
                f"cannot reach PostgreSQL at {self.host}:{self.port}: {first}") from None

    def check(self):
        self._connect().close()

    def connect(self, name):
        """A DB-API connection to database *name* (autocommit)."""
        return self._connect(dbname=name)

    def exists(self, name):
        return self.clash(name) is not None

    def clash(self, name):
        """What of the name *name* exists on the server and who made it, e.g. "database
        and role 'x' (linohost site books of host root /srv/a)", or None."""
        with self._connect() as c:
            db = c.execute("SELECT shobj_description(oid, 'pg_database'), "
                           "pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
            role = c.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
                             "WHERE rolname = %s", (name,)).fetchone()
        what = [w for w, row in (("database", db), ("role", role)) if row]
        if not what:
            return None
        notes = [db and (db[0] or f"owned by role {db[1]}"), role and role[0]]
        notes = list(dict.fromkeys(n for n in notes if n)) or ["not made by linohost"]
        return f"{' and '.join(what)} {name!r} ({'; '.join(notes)})"

    def create(self, name, password, note=""):
        """Create role *name* and database *name* owned by it, closed to others;
        *note* (who made them) becomes their comment."""
        ident = psycopg.sql.Identifier(name)
        with self._connect() as c:
            c.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                ident, psycopg.sql.Literal(password)))
            c.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0")
                      .format(ident, ident))
            c.execute(psycopg.sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
        if note:
            self.mark(name, note)

    def mark(self, name, note):
        """Record who made role and database *name* as their comment."""
        ident = psycopg.sql.Identifier(name)
        with self._connect() as c:
            for kind in ("ROLE", "DATABASE"):
                c.execute(psycopg.sql.SQL("COMMENT ON " + kind + " {} IS {}").format(
                    ident, psycopg.sql.Literal(note)))

    def set_password(self, name, password):
        """Give role *name* the password *password*."""
        with self._connect() as c:
            c.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(password)))

    def others_of(self, name):
        """The databases other than *name* that role *name* owns or may reach (besides
        the server's own): what taking the role over would take from them."""
        with self._connect() as c:
            rows = c.execute(
                "SELECT datname FROM pg_database WHERE datname <> %s AND NOT datistemplate "
                "AND datname <> 'postgres' AND (pg_get_userbyid(datdba) = %s "
                "OR has_database_privilege(%s, datname, 'CREATE'))",
                (name, name, name)).fetchall()
        return sorted(r[0] for r in rows)

    def drop(self, name):
        ident = psycopg.sql.Identifier(name)
        with self._connect() as c:
            c.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            c.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(ident))

    def _client(self):
        """Connection options and environment of the client tools (admin role)."""
        args = ["-h", self.host, "-p", self.port, "-U", self.user]
        return args, ({"PGPASSWORD": self.password} if self.password else {})

    def dump(self, name, path):
        """A consistent snapshot of database *name* in pg_dump's custom format."""
        args, env = self._client()
        run_tool(["pg_dump", *args, "-Fc", "--no-owner", "-f", path, name], env=env,
                 what=f"pg_dump {name}")

    def load(self, name, path, password=None, over=False):
        """Load a dump into the empty database *name*, objects owned by role *name*
        (*over*: into the database as it is, dropping first what the dump holds).

        With the role's *password* pg_restore logs in as that role itself: an archive
        (which may come from elsewhere) then runs with the rights of its own site only,
        never with the admin's. Without it, as the admin under SET ROLE (local dumps)."""
        if password is None:
            args, env = self._client()
            args.append(f"--role={name}")
        else:
            args = ["-h", self.host, "-p", self.port, "-U", name]
            env = {"PGPASSWORD": password}
        run_tool(["pg_restore", *args, "--no-owner", "--no-privileges", "--exit-on-error",
                  "--single-transaction", *(["--clean", "--if-exists"] if over else []),
                  "-d", name, path], env=env,
                 what=f"pg_restore {name}")
