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

import os
from pathlib import Path

from ..errors import NotInitialised, UsageError
from . import config
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

    def site_dir(self, name):
        return self.root / name

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
            raise UsageError(f"no site named {name!r} in {self.root}")
        return Site.load(path)

    # -- environments -------------------------------------------------------
    def env_names(self):
        if not self.envs_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.envs_dir.glob(f"*/{Env.FILENAME}"))

    def envs(self):
        return [self.env(n) for n in self.env_names()]

    def env(self, name):
        path = self.envs_dir / name / Env.FILENAME
        if not path.exists():
            raise UsageError(
                f"no environment named {name!r}: create it with `linohost env create {name}`")
        return Env.load(path)

    def site_url(self, site, port=None):
        """The public URL of *site* under this host's configuration."""
        port = port or self.cfg["apache.port"]
        server = self.cfg["server_name"]
        netloc = lambda name: name if port == 80 else f"{name}:{port}"  # noqa: E731
        if site.domain:
            return f"http://{netloc(site.domain)}/"
        if self.cfg["mode"] == "domain":
            return f"http://{netloc(site.name + '.' + server)}/"
        return f"http://{netloc(server)}/{site.name}/"

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
