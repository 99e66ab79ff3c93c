"""The host: its root directory, configuration, sites and environments.

Layout of a host root::

    linohost.toml        the host configuration (schema-validated)
    local/               on every site's sys.path: djangosite_local.py
    secrets/             owner-only: master or shared key, database passwords
    envs/NAME/           virtualenvs; envs/NAME/static/ collected static files
    registry/SITE.toml   one record per site (written last when a site is made)
    run/                 lock, journals, web server runtime files
    logs/                logs of linohost and the web server
    home/                HOME of the site user (as root): caches of pip, fontconfig...
    SITE/                the project directory of each site (a Python package)
"""

import hashlib
import os
from pathlib import Path

from ..errors import NotInitialised, UsageError
from . import config, names, tls
from .env import Env
from .site import Site


class Host:
    """A host root and what is recorded in it. Reads only; changes are in apply/."""

    def __init__(self, root, cfg=None):
        self.root = Path(root).absolute()
        self.cfg = cfg

    # -- paths --------------------------------------------------------------
    @property
    def config_path(self):
        return self.root / config.FILENAME

    local_dir = property(lambda self: self.root / "local")
    secrets_dir = property(lambda self: self.root / "secrets")
    envs_dir = property(lambda self: self.root / "envs")
    registry_dir = property(lambda self: self.root / "registry")
    run_dir = property(lambda self: self.root / "run")
    logs_dir = property(lambda self: self.root / "logs")
    home_dir = property(lambda self: self.root / "home")
    adopted_dir = property(lambda self: self.root / "adopted")     # what adopt keeps

    @property
    def backups_dir(self):
        """Where `backup` writes its archives (``backup.dir``, default ROOT/backups)."""
        d = self.cfg["backup.dir"]
        return Path(d) if d else self.root / "backups"

    @property
    def backup_results(self):
        """What the last backup of each site did (``run/backups.json``, root's only)."""
        return self.run_dir / "backups.json"

    def site_dir(self, name):
        return self.root / name

    def maintenance_page(self, name):
        """While it exists, the site answers every request with it and runs no
        background tasks (apply/maintenance.py)."""
        return self.root / name / "maintenance.html"

    def under_maintenance(self, name):
        return self.maintenance_page(name).exists()

    # -- loading ------------------------------------------------------------
    @classmethod
    def open(cls, root):
        """Load an initialised host root or raise NotInitialised/ConfigError."""
        root = Path(root).absolute()
        if not (root / config.FILENAME).exists():
            raise NotInitialised(f"{root} is not a linohost root: run `linohost init --root {root}`")
        return cls(root, config.load(root / config.FILENAME))

    @staticmethod
    def resolve_root(root=None):
        """--root, else $LINOHOST_ROOT, else the default for this user."""
        return Path(root or os.environ.get("LINOHOST_ROOT") or config.default_root())

    # -- sites --------------------------------------------------------------
    def site_names(self):
        if not self.registry_dir.is_dir():
            return []
        return sorted(p.stem for p in self.registry_dir.glob("*.toml"))

    def sites(self):
        return [self.site(n) for n in self.site_names()]

    def has_site(self, name):
        return (self.registry_dir / f"{name}.toml").exists()

    def site(self, name):
        path = self.registry_dir / f"{name}.toml"
        if not path.exists():
            raise UsageError(f"no site named {name!r} in {self.root}"
                             + names.did_you_mean(name, self.site_names(), "linohost list"))
        return Site.load(path)

    # -- databases ----------------------------------------------------------
    @property
    def db_prefix(self):
        """What the database and user names of new server-database sites begin with."""
        return self.cfg["db_prefix"] or derived_db_prefix(self.root)

    def db_note(self, site_name):
        """Recorded on the database server with a site's database: who made it."""
        return f"linohost site {site_name} of host root {self.root}"

    # -- environments -------------------------------------------------------
    def env_names(self):
        if not self.envs_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.envs_dir.glob(f"*/{Env.FILENAME}")
                      if not p.parent.name.startswith("."))     # (being removed)

    def envs(self):
        return [self.env(n) for n in self.env_names()]

    def env(self, name):
        path = self.envs_dir / name / Env.FILENAME
        if not path.exists():
            raise UsageError(
                f"no environment named {name!r}"
                + names.did_you_mean(name, self.env_names(), "linohost env list")
                + f": create it with `linohost env create {name}`")
        return Env.load(path)

    def site_url(self, site, port=None):
        """The public URL of *site* under this host's configuration."""
        port = port or self.cfg["apache.port"]
        server = self.cfg["server_name"]
        scheme = tls.scheme(self.cfg)
        default_port = 443 if scheme == "https" else 80
        netloc = lambda name: name if port == default_port else f"{name}:{port}"  # noqa: E731
        if site.domain:
            return f"{scheme}://{netloc(site.domain)}/"
        if self.cfg["mode"] == "domain":
            return f"{scheme}://{netloc(site.name + '.' + server)}/"
        return f"{scheme}://{netloc(server)}/{site.name}/"

    def local_url(self, site, port=None):
        """The URL of *site* on this machine while `linohost serve` runs: the
        public one may not resolve here (localhost and NAME.localhost do)."""
        port = port or self.cfg["apache.port"]
        if self.site_prefix(site) == "/":
            return f"http://{_netloc(site.name + '.localhost', port)}/"
        return f"http://{_netloc('localhost', port)}/{site.name}/"

    def site_hostnames(self, site):
        """The host names *site* answers to: its own (and NAME.localhost for local
        serving), or under a prefix the server's."""
        if self.site_prefix(site) == "/":
            own = site.domain or f"{site.name}.{self.cfg['server_name']}"
            return tuple(dict.fromkeys((own, f"{site.name}.localhost")))
        return tuple(dict.fromkeys((self.cfg["server_name"], "localhost", "127.0.0.1")))

    def site_prefix(self, site):
        """Lino's ``site_prefix``: ``/NAME/`` for prefix sites, ``/`` for domain sites."""
        if site.domain or self.cfg["mode"] == "domain":
            return "/"
        return f"/{site.name}/"


def derived_db_prefix(root):
    """``lino_`` and 6 hex digits of a hash of *root*'s path: two host roots on one
    database server each get their own names (34 characters at most with a site name)."""
    return f"lino_{hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:6]}_"


def _netloc(name, port):
    return name if port == 80 else f"{name}:{port}"
