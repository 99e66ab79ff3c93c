"""The host configuration: every key declared once.

Each :class:`Key` carries its name, type, default, allowed values and doc.
The JSON schema that validates ``linohost.toml``, the error messages (file,
line, key) and the reference table in the README all come from :data:`KEYS`.
"""

import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import tomli_w

from ..errors import ConfigError

FILENAME = "linohost.toml"


def _default_python():
    # Apache's daemon users cannot read a Python under root's home (pyenv):
    # prefer the system's, readable by all.
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


@dataclass(frozen=True)
class Key:
    name: str                       # dotted: "postgresql.host"
    type: str                       # JSON schema type: string, integer, boolean
    default: object
    doc: str
    choices: tuple = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None

    def schema(self):
        s = {"type": self.type, "description": self.doc}
        if self.pattern:
            s["pattern"] = self.pattern
        if self.choices:
            s["enum"] = list(self.choices)
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        return s


PORT = dict(minimum=1, maximum=65535)

KEYS = (
    Key("server_name", "string", "localhost",
        "Host name of the one vhost (prefix mode) or the parent domain of every site (domain mode)."),
    Key("mode", "string", "prefix",
        "How sites are addressed: `prefix` (https://server/SITE/) or `domain` (https://SITE.server/).",
        choices=("prefix", "domain")),
    Key("secret_policy", "string", "derived",
        "SECRET_KEY policy: `derived` (one per site from a master secret), `shared` (one for all), "
        "`env` (DJANGO_SECRET_KEY from the environment).",
        choices=("derived", "shared", "env")),
    Key("python", "string", None,
        "Base Python for new environments; must be readable by the site user "
        "(default: /usr/bin/python3 if present).", ),
    Key("default_env", "string", "default", "Environment used by `new` without --env."),
    Key("site_user", "string", "www-data",
        "As root: the web server's own user (Apache's `User`); it reads only media and static "
        "files. Each site runs as its own user (`site_user_prefix`)."),
    Key("site_group", "string", "www-data",
        "As root: the web server's group; a site's project directory (traverse only) and its "
        "media/ belong to it."),
    Key("site_user_prefix", "string", "lino-",
        "As root: each site runs as the system user PREFIX+SITE (at most 32 characters), "
        "made by `new` and removed by `rm`."),
    Key("site_ids", "string", "70000-99999",
        "As root: the user and group ids of site users, FIRST-LAST (each site gets the lowest "
        "id free as both); never Debian's system or people's ranges, systemd's, or the "
        "machine's subordinate ids (`/etc/subuid`).", pattern=r"^[0-9]+-[0-9]+$"),
    Key("time_zone", "string", "UTC", "TIME_ZONE of every site."),
    Key("admin_email", "string", "", "ADMINS of every site: who gets error reports (empty: none)."),
    Key("db_prefix", "string", "",
        "Prefix of the database and user names of new PostgreSQL/MariaDB sites, so that host "
        "roots can share a database server (empty: `lino_` and 6 hex digits of a hash of the "
        "host root's path, e.g. `lino_3fa94c_`). Lower-case letters, digits and `_`, at most 30.",
        pattern=r"^([a-z][a-z0-9_]{0,29})?$"),
    Key("postgresql.host", "string", "127.0.0.1", "PostgreSQL server host."),
    Key("postgresql.port", "integer", 5432, "PostgreSQL server port.", **PORT),
    Key("postgresql.admin_user", "string", "postgres",
        "PostgreSQL role allowed to create databases and roles."),
    Key("postgresql.admin_password", "string", "", "Password of the admin role (empty: none)."),
    Key("mysql.host", "string", "127.0.0.1", "MariaDB/MySQL server host."),
    Key("mysql.port", "integer", 3306, "MariaDB/MySQL server port.", **PORT),
    Key("mysql.admin_user", "string", "root",
        "MariaDB/MySQL user allowed to create databases and users."),
    Key("mysql.admin_password", "string", "", "Password of the admin user (empty: none)."),
    Key("mysql.client_host", "string", "127.0.0.1",
        "Host part of the per-site MariaDB users: the address sites connect from "
        "('localhost' for a socket, or '%' for any)."),
    Key("backup.dir", "string", "",
        "Where archives go (empty: ROOT/backups). Owner-only; put it on another disk."),
    Key("backup.keep_daily", "integer", 7,
        "`prune` keeps the newest archive of each of this many last days (per site).",
        minimum=0),
    Key("backup.keep_weekly", "integer", 4,
        "`prune` keeps the newest archive of each of this many last ISO weeks (per site).",
        minimum=0),
    Key("process_backend", "string", "keeper",
        "What runs the sites' Python: `keeper` (a worker per site started on its first "
        "request and stopped when idle, behind a unix socket the keeper holds) or `mod_wsgi` "
        "(one daemon process per site inside Apache).",
        choices=("keeper", "mod_wsgi")),
    Key("web_server", "string", "apache",
        "Front server of the sites: `apache`, or `nginx` (needs process_backend keeper: "
        "mod_wsgi runs inside Apache). `serve` runs it, `config apache`/`config nginx` "
        "configure the system's.", choices=("apache", "nginx")),
    Key("keeper.idle_timeout", "integer", 900,
        "Seconds without a request after which a site's worker leaves and the site sleeps "
        "(0: never).", minimum=0),
    Key("keeper.threads", "integer", 8, "Threads of each site worker.", minimum=1),
    Key("keeper.start_timeout", "integer", 300,
        "Seconds a worker may take to load its site before the keeper gives up on it.",
        minimum=1),
    Key("keeper.zygotes", "boolean", True,
        "Fork workers warm from a zygote per site group (sites of one environment, app, "
        "languages, front end, URL layout, database engine and own `lino.ini`): a sleeping "
        "site answers in a "
        "fraction of a second and its worker shares the zygote's memory. Off: every worker "
        "starts Lino itself."),
    Key("keeper.variant_sites", "integer", 2,
        "Sites whose own rows in what Lino's start-up reads (journals, excerpt types, "
        "content types) differ from the demo data, as alike as this many sites are, get a "
        "zygote of their own with those rows (0: such sites start plainly).", minimum=0),
    Key("keeper.jobs", "boolean", True,
        "Run the sites' scheduled background tasks (Lino's `linod.SystemTask`) in their "
        "workers, and start a sleeping site's worker when its next task is due."),
    Key("keeper.job_wakeups", "integer", 2,
        "At most this many workers started only for background tasks at a time "
        "(0: a sleeping site is never started for them).", minimum=0),
    Key("keeper.min_job_interval", "integer", 300,
        "Seconds a site sleeps at least before it is started for a background task; "
        "tasks recurring more often than this (e.g. sending pending e-mails every 10 s) "
        "run only while a worker runs anyway.", minimum=10),
    Key("keeper.max_starting", "integer", 0,
        "Site workers that start plainly at the same time (0: one per core); more wait in "
        "their sockets' backlog, in arrival order. Forks from a zygote: four times as many.",
        minimum=0),
    Key("keeper.zygote_wait", "integer", 60,
        "Seconds a sleeping site's first request waits for its group's zygote while that "
        "starts, instead of a plain start (which would slow the zygote down).", minimum=0),
    Key("keeper.max_workers", "integer", 0,
        "Site workers that run at once (0: no limit); for one more, the least recently "
        "used worker finishes its requests and leaves.", minimum=0),
    Key("keeper.min_free_memory", "integer", 256,
        "MiB the host keeps available (MemAvailable) when the keeper starts a worker: "
        "the least recently used workers leave first, and only when none can go does "
        "the site answer 503 with Retry-After (0: no check).", minimum=0),
    Key("keeper.proxy_timeout", "integer", 300,
        "Seconds Apache waits for a site's answer (a sleeping site's first one includes "
        "its start).", minimum=1),
    Key("keeper.history_interval", "integer", 300,
        "Seconds between two samples of the status page's history (each site's memory, "
        "requests and 5xx answers, the host's memory); it keeps 288 samples, a day at 300.",
        minimum=1),
    Key("limits.memory", "integer", 1024,
        "MiB a site's worker may hold (with what it starts); beyond it the kernel ends "
        "the worker and the site answers 503 for a moment (0: no limit). A site's own: "
        "`linohost limits SITE --memory N`.", minimum=0),
    Key("limits.cpu_weight", "integer", 100,
        "A site worker's share of the CPU when the CPU is busy, as systemd's CPUWeight "
        "(100: as everybody's).", minimum=1, maximum=10000),
    Key("limits.tasks", "integer", 512,
        "Processes and threads a site's worker may have (0: no limit).", minimum=0),
    Key("alerts.failed_starts", "integer", 3,
        "Mail admin_email when a site failed to start this many times in a row (the "
        "keeper sends alerts, at most one per subject per hour).", minimum=1),
    Key("alerts.backup_days", "integer", 2,
        "Mail admin_email when a site's newest backup is older than this many days.",
        minimum=1),
    Key("alerts.certificate_days", "integer", 14,
        "Mail admin_email when a certificate (tls.mode files) expires within this many "
        "days.", minimum=1),
    Key("alerts.min_free_disk", "integer", 1024,
        "Mail admin_email when the host root's disk has less than this many MiB free.",
        minimum=0),
    Key("apache.port", "integer", 8000, "Port of `linohost serve` (Apache or nginx).", **PORT),
    Key("apache.server", "string", "auto",
        "Apache binary of `linohost serve`: `debian` (packages apache2, libapache2-mod-wsgi-py3), "
        "`embedded` (built from PyPI into ROOT/apache/venv), `auto` (Debian's when installed).",
        choices=("auto", "debian", "embedded")),
    Key("apache.vhost_port", "integer", 80,
        "Port of the vhosts in the system Apache's or nginx's config (`linohost config "
        "apache`, `config nginx`).", **PORT),
    Key("apache.extra_directives", "string", "",
        "Apache directives added to every vhost, e.g. logging or TLS lines (checked by configtest)."),
    Key("apache.threads", "integer", 15, "Threads per site daemon process.", minimum=1),
    Key("apache.inactivity_timeout", "integer", 0,
        "Seconds after which an idle site daemon is stopped (0: never).", minimum=0),
    Key("apache.config_path", "string", "/etc/apache2/sites-available/linohost.conf",
        "Where `linohost config apache --write` installs the system Apache config."),
    Key("nginx.config_path", "string", "/etc/nginx/sites-available/linohost.conf",
        "Where `linohost config nginx --write` installs the system nginx config."),
    Key("systemd.unit_dir", "string", "/etc/systemd/system",
        "Where `linohost config systemd --write` installs the boot-time units."),
    Key("systemd.backup_calendar", "string", "*-*-* 03:15:00",
        "When the backup timer runs `backup --all` and `prune` (systemd OnCalendar=)."),
    Key("logrotate.path", "string", "/etc/logrotate.d/linohost",
        "Where `linohost config systemd --write` installs the logrotate snippet for ROOT/logs."),
    Key("logrotate.keep_weeks", "integer", 8, "Weekly rotated logs kept.", minimum=1),
    Key("tls.mode", "string", "off",
        "HTTPS: `off`, `files` (certificates from tls.cert_file/key_file and tls.cert_dir) or "
        "`acme` (obtained and renewed by the system Apache's mod_md, or for nginx by certbot).",
        choices=("off", "files", "acme")),
    Key("tls.https_port", "integer", 443,
        "Port of the HTTPS vhosts in the system Apache's config (`serve` uses apache.port).",
        **PORT),
    Key("tls.cert_file", "string", "",
        "files: certificate chain (PEM) of server_name, also covering *.server_name in domain mode."),
    Key("tls.key_file", "string", "", "files: private key (PEM) of tls.cert_file."),
    Key("tls.cert_dir", "string", "",
        "files: directory of DOMAIN.crt and DOMAIN.key for sites with their own --domain "
        "(a site without them uses tls.cert_file)."),
    Key("tls.hsts_max_age", "integer", 31536000,
        "Strict-Transport-Security max-age in seconds (0: no HSTS header).", minimum=0),
    Key("tls.acme_directory", "string", "https://acme-v02.api.letsencrypt.org/directory",
        "acme: directory URL of the ACME CA (MDCertificateAuthority)."),
    Key("tls.acme_email", "string", "",
        "acme: contact e-mail of the ACME account (empty: admin_email)."),
    Key("tls.acme_ca_file", "string", "",
        "acme: CA certificates (PEM) to trust for the ACME directory, e.g. a test CA "
        "(empty: the system's)."),
    Key("apache.md_store_dir", "string", "/etc/apache2/md",
        "acme with Apache: mod_md's store (its MDStoreDir; Debian's is ServerRoot/md), where "
        "the keeper reads when each certificate expires (the status page, the metrics)."),
    Key("certbot.config_dir", "string", "/etc/letsencrypt",
        "acme with nginx: certbot's directory (its accounts, certificates and renewal "
        "settings; Debian's certbot.timer renews what is in /etc/letsencrypt)."),
    Key("mail.host", "string", "", "SMTP server of outgoing mail (empty: left to Lino, whose default sends nothing)."),
    Key("mail.port", "integer", 587, "SMTP port.", **PORT),
    Key("mail.security", "string", "starttls",
        "SMTP transport security: `starttls` (EMAIL_USE_TLS), `ssl` (EMAIL_USE_SSL) or `none`.",
        choices=("starttls", "ssl", "none")),
    Key("mail.user", "string", "",
        "SMTP user (empty: no authentication); its password is secrets/smtp.password, "
        "set by `linohost init --smtp-password-file`."),
    Key("mail.sender", "string", "noreply+{site}@{server}",
        "Sender address of each site (DEFAULT_FROM_EMAIL, SERVER_EMAIL); `{site}` and "
        "`{server}` are replaced by the site's name and server_name."),
)
KEY_BY_NAME = {k.name: k for k in KEYS}


def _defaults():
    d = {}
    for k in KEYS:
        d[k.name] = _default_python() if k.name == "python" else k.default
    return d


def schema():
    """The JSON schema of ``linohost.toml``, built from :data:`KEYS`."""
    root = {"type": "object", "properties": {}, "additionalProperties": False}
    for k in KEYS:
        node = root
        *tables, leaf = k.name.split(".")
        for t in tables:
            node = node["properties"].setdefault(
                t, {"type": "object", "properties": {}, "additionalProperties": False})
        node["properties"][leaf] = k.schema()
    return root


def _line_of(text, path):
    """Line number of the key *path* (a list of keys) in TOML *text*.

    TOML spells a key in many ways (``[a]`` then ``b =``, ``a.b =``, ``a = {b = ..}``,
    ``["a"]``, ``[[a]]``), so rather than matching text this parses ever longer
    first parts of the file: the key is on the first line that makes it appear
    (or, for a value over several lines, on the last line before it that names it)."""
    lines = text.splitlines()
    for n in range(1, len(lines) + 1):
        try:
            data = tomllib.loads("\n".join(lines[:n]))
        except tomllib.TOMLDecodeError:
            continue                        # a value over several lines, not complete yet
        if _has(data, path):
            leaf = str(path[-1])
            for no in range(n, 0, -1):
                if leaf in lines[no - 1]:
                    return no
            return n
    return 1


def _has(data, path):
    for key in path:
        if isinstance(data, list) and str(key).isdigit() and int(key) < len(data):
            data = data[int(key)]
        elif isinstance(data, dict) and key in data:
            data = data[key]
        else:
            return False
    return True


class HostConfig:
    """Validated host configuration: ``cfg["postgresql.port"]``."""

    def __init__(self, values, path=None):
        self._values = {**_defaults(), **values}
        self.path = path

    def __getitem__(self, name):
        return self._values[name]

    def explicit(self):
        """Nested dict of the values that differ from the defaults (for writing)."""
        out = {}
        for k in KEYS:
            v = self._values[k.name]
            if v == _defaults()[k.name] and k.name not in ("server_name", "mode", "secret_policy"):
                continue
            node = out
            *tables, leaf = k.name.split(".")
            for t in tables:
                node = node.setdefault(t, {})
            node[leaf] = v
        return out

    def replace(self, **changes):
        """A copy with some keys changed (dotted names use ``__``: ``apache__port``)."""
        values = dict(self._values)
        for name, v in changes.items():
            name = name.replace("__", ".")
            if name not in KEY_BY_NAME:
                raise ConfigError(f"unknown configuration key {name!r}")
            values[name] = v
        validate_flat(values, self.path)
        return HostConfig(values, self.path)


def _flatten(data, prefix=""):
    for k, v in data.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def validate_flat(values, path=None):
    nested = {}
    for name, v in values.items():
        if v is None:
            continue
        node = nested
        *tables, leaf = name.split(".")
        for t in tables:
            node = node.setdefault(t, {})
        node[leaf] = v
    _validate(nested, "", path)


def _validate(data, text, path):
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        _check_together(data, text, path)
        return
    e = errors[0]
    keypath = [str(p) for p in e.absolute_path]
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        keypath = keypath + [extra[0]]
        msg = "unknown key"
    elif e.validator == "enum":
        msg = f"must be one of {', '.join(map(str, e.validator_value))}, not {e.instance!r}"
    elif e.validator == "pattern":
        msg = f"must match {e.validator_value}, not {e.instance!r}"
    elif e.validator == "type":
        msg = f"must be of type {e.validator_value}, not {type(e.instance).__name__}"
    else:
        msg = e.message
    if not text:                    # a value given on the command line, not in the file
        raise ConfigError(f"{'.'.join(keypath)}: {msg}")
    raise ConfigError(f"{path}:{_line_of(text, keypath)}: {'.'.join(keypath)}: {msg}")


def _check_together(data, text, path):
    """Keys valid alone but not together: nginx cannot run mod_wsgi."""
    if data.get("web_server") == "nginx" and data.get("process_backend", "keeper") != "keeper":
        msg = ("web_server: nginx needs process_backend keeper, not "
               f"{data['process_backend']!r} (mod_wsgi runs inside Apache)")
        raise ConfigError(f"{path}:{_line_of(text, ['web_server'])}: {msg}" if text else msg)


def load(path):
    """Read and validate ``linohost.toml``; errors name the file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = f"{path}:{m.group(1)}" if m else str(path)
        reason = re.sub(r"\s*\(at line.*\)", "", str(e))
        if m and reason == "Cannot overwrite a value":
            reason = f"{_key_at(text, int(m.group(1)))} is given twice"
        raise ConfigError(f"{where}: invalid TOML: {reason}") from None
    _validate(data, text, path)
    return HostConfig(dict(_flatten(data)), path)


def _key_at(text, line):
    """The dotted key that line *line* (1-based) of TOML *text* sets."""
    lines = text.splitlines()
    key = lines[line - 1].split("=", 1)[0].strip()
    for above in reversed(lines[:line - 1]):
        m = re.match(r"\s*\[([^\[\]]+)\]", above)
        if m:
            return f"{m.group(1).strip()}.{key}"
    return key


def dumps(cfg):
    """The TOML text of *cfg* with a header comment."""
    head = ("# linohost host configuration. Reference: `linohost config keys`.\n"
            "# Apply changes with `linohost init` (regenerates the shared settings).\n\n")
    return head + tomli_w.dumps(cfg.explicit())


def reference_table():
    """Markdown table of every key (for the README)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in KEYS:
        default = "/usr/bin/python3" if k.name == "python" else k.default
        rows.append(f"| `{k.name}` | {k.type} | `{default!r}` | {k.doc} |")
    return "\n".join(rows)


def default_root():
    """The host root when neither --root nor LINOHOST_ROOT is given."""
    if os.geteuid() == 0:
        return Path("/usr/local/lino_sites")
    return Path.home() / "lino_sites"


