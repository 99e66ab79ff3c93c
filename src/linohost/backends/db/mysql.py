"""MariaDB/MySQL: a database and a user of the same name per site."""

from ...errors import ServiceUnavailable
from ...imports import lazy
from .tools import run_tool

pymysql = lazy("pymysql")


def quote_ident(name):
    """A backtick-quoted identifier (PyMySQL quotes values, not identifiers)."""
    return "`" + name.replace("`", "``") + "`"


class MySQL:
    engine = "mysql"
    server = True
    dump_name = "db.sql"

    def __init__(self, cfg):
        self.host, self.port = cfg["mysql.host"], cfg["mysql.port"]
        self.user, self.password = cfg["mysql.admin_user"], cfg["mysql.admin_password"]
        self.client_host = cfg["mysql.client_host"]

    def connect_args(self):
        return {"host": self.host, "port": self.port}

    def _connect(self, database=None):
        try:
            return pymysql.connect(host=self.host, port=self.port, user=self.user,
                                   password=self.password, database=database,
                                   autocommit=True, connect_timeout=5)
        except pymysql.err.OperationalError as e:
            raise ServiceUnavailable(
                f"cannot reach MariaDB/MySQL at {self.host}:{self.port}: {e.args[-1]}") from None

    def check(self):
        self._connect().close()

    def connect(self, name):
        """A DB-API connection to database *name* (autocommit)."""
        return self._connect(database=name)

    def exists(self, name):
        return self.clash(name) is not None

    def clash(self, name):
        """What of the name *name* exists on the server and who made it (the
        database's comment, MariaDB 10.5+), e.g. "database and user 'x' (linohost
        site books of host root /srv/a)", or None."""
        with self._connect() as c, c.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT * FROM information_schema.schemata WHERE schema_name = %s",
                        (name,))
            db = cur.fetchone()
            cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", (name,))
            user = cur.fetchone()
        what = [w for w, row in (("database", db), ("user", user)) if row]
        if not what:
            return None
        note = (db or {}).get("SCHEMA_COMMENT") or "not made by linohost"
        return f"{' and '.join(what)} {name!r} ({note})"

    def create(self, name, password, note=""):
        """Create database *name* and user *name* with privileges on it only; *note*
        (who made them) becomes the database's comment on MariaDB."""
        with self._connect() as c, c.cursor() as cur:
            comment = " COMMENT %s" if note and "MariaDB" in c.get_server_info() else ""
            cur.execute(f"CREATE DATABASE {quote_ident(name)} "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" + comment,
                        (note,) if comment else None)
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (name, self.client_host, password))
            cur.execute(f"GRANT ALL PRIVILEGES ON {quote_ident(name)}.* TO %s@%s",
                        (name, self.client_host))

    def mark(self, name, note):
        """Set the database's comment again (MariaDB): Lino's initdb drops and
        recreates a MySQL database, and the comment with it."""
        with self._connect() as c, c.cursor() as cur:
            if "MariaDB" in c.get_server_info():
                cur.execute(f"ALTER DATABASE {quote_ident(name)} COMMENT %s", (note,))

    def set_password(self, name, password, host=None):
        """Give user *name*@*host* (default: the sites' host part) *password*."""
        with self._connect() as c, c.cursor() as cur:
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s",
                        (name, self.client_host if host is None else host, password))

    def hosts_of(self, name):
        """The host parts of the users called *name*."""
        with self._connect() as c, c.cursor() as cur:
            cur.execute("SELECT host FROM mysql.user WHERE user = %s", (name,))
            return sorted(r[0] for r in cur.fetchall())

    def rehost(self, name, old, new):
        """Give user *name*@*old* the host part *new*."""
        with self._connect() as c, c.cursor() as cur:
            cur.execute("RENAME USER %s@%s TO %s@%s", (name, old, name, new))

    def others_of(self, name):
        """The databases other than *name* that user *name* has privileges on (or
        ["*"]: on all): what taking the user over would take from them."""
        with self._connect() as c, c.cursor() as cur:
            cur.execute("SELECT DISTINCT db FROM mysql.db WHERE user = %s AND db <> %s",
                        (name, name))
            dbs = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT 1 FROM mysql.global_priv WHERE user = %s AND "
                        "JSON_VALUE(priv, '$.access') <> 0", (name,))
            return ["*"] if cur.fetchone() else sorted(dbs)

    def drop(self, name):
        with self._connect() as c, c.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")
            cur.execute("DROP USER IF EXISTS %s@%s", (name, self.client_host))

    def _client(self):
        """Connection options and environment of the client tools (admin user)."""
        args = ["-h", self.host, "-P", self.port, "-u", self.user]
        return args, ({"MYSQL_PWD": self.password} if self.password else {})

    def dump(self, name, path):
        """A consistent snapshot of database *name* (one transaction, InnoDB)."""
        args, env = self._client()
        run_tool(["mysqldump", *args, "--single-transaction", "--routines", "--triggers",
                  "--no-tablespaces", "--default-character-set=utf8mb4",
                  f"--result-file={path}", name], env=env, what=f"mysqldump {name}")

    def load(self, name, path, password=None, over=False):
        """Load a dump into the empty database *name* (*over*: into the database as it
        is; mysqldump's tables are dropped before they are made again).

        With the *password* of user *name* the client logs in as that user, whose
        rights end at its own database: SQL from an archive (which may come from
        elsewhere) cannot reach other databases or users. Without it, as the admin."""
        if password is None:
            args, env = self._client()
        else:
            args = ["-h", self.host, "-P", self.port, "-u", name]
            env = {"MYSQL_PWD": password}
        with open(path, "rb") as f:
            run_tool(["mysql", *args, "--default-character-set=utf8mb4", name], env=env,
                     stdin=f, what=f"mysql {name} < dump")
