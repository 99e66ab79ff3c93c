"""What the status page shows of a site beside its status row, read from disk and
cached so that a page of hundreds of sites stays fast: its app, the app's version
installed in its environment, the environment's name, the disk use of its directory
(measured by the sampler thread at most every :data:`DISK_EVERY` seconds, never on a
page's request) and when the certificates the host serves expire (the operator's
files, or where mod_md or certbot keep them). Each file read here is read again only when its mtime changed.
"""
import importlib.metadata
import os
import re
import time
from pathlib import Path

from ..model import tls
from ..model.env import Env
from ..model.site import Site

DISK_EVERY = 900
#: What :meth:`SiteFacts.site` answers, none of it known.
UNKNOWN = dict.fromkeys(("app", "version", "env", "disk_bytes"))


def _norm(name):
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _versions(site_packages):
    """{normalised distribution name: version} of what is installed in *site_packages*."""
    return {_norm(d.metadata["Name"] or ""): d.version
            for d in importlib.metadata.distributions(path=[str(site_packages)])}


def disk_use(path):
    """Bytes the files under *path* take on disk (symbolic links not followed)."""
    total, todo = 0, [path]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for e in entries:
            try:
                total += e.stat(follow_symlinks=False).st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
            except OSError:
                continue
    return total


class SiteFacts:
    """The cached facts of *host*'s sites."""

    def __init__(self, host):
        self.host = host
        self._files = {}            # path -> (mtime_ns, what was read from it)
        self._libs = {}             # an environment's path -> its site-packages
        self.disk = {}              # site -> bytes, replaced whole by measure_disks
        self.disk_at = None         # time.monotonic() of the last measure

    def _read(self, path, read):
        """*read(path)*, again only when *path*'s mtime changed (None: no such file)."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        hit = self._files.get(path)
        if hit is None or hit[0] != mtime:
            try:
                hit = (mtime, read(path))
            except Exception:               # noqa: BLE001 - being written: next time
                return None
            self._files[path] = hit
        return hit[1]

    def site(self, name):
        """{"app", "version", "env", "disk_bytes"} of site *name* (None where unknown)."""
        site = self._read(self.host.registry_dir / f"{name}.toml", Site.load)
        if site is None:
            return {**UNKNOWN, "disk_bytes": self.disk.get(name)}
        return {"app": site.app, "version": self._version(site), "env": site.env,
                "disk_bytes": self.disk.get(name)}

    def _version(self, site):
        """The version of *site*'s app (the distribution of its settings module's top
        package) installed in its environment."""
        env = self._read(self.host.envs_dir / site.env / Env.FILENAME, Env.load)
        if env is None:
            return None
        if env.path not in self._libs:
            self._libs[env.path] = next(
                iter(sorted(Path(env.path).glob("lib/python*/site-packages"))), None)
        lib = self._libs[env.path]
        versions = self._read(lib, _versions) if lib else None
        return (versions or {}).get(_norm(site.settings_module.split(".")[0]))

    def vhost(self, name):
        """The host name that serves site *name* (its own domain, or server_name)."""
        site = self._read(self.host.registry_dir / f"{name}.toml", Site.load)
        return (site.domain if site and site.domain else None) or self.host.cfg["server_name"]

    def certificates(self):
        """{vhost name: epoch its certificate expires} ({} with tls off; a name
        without a certificate yet is left out)."""
        cfg = self.host.cfg
        names = {cfg["server_name"], *(self.vhost(n) for n in self.host.site_names())}
        out = {}
        for name, (cert, _) in sorted(tls.certificates(cfg, sorted(names)).items()):
            end = self._read(Path(cert), tls.not_after)
            if end is not None:
                out[name] = end
        return out

    def measure_disks(self, names, now=None):
        """Measure the disk use of the sites *names* if the last measure is older than
        DISK_EVERY seconds (the sampler thread calls this); forget removed files."""
        now = time.monotonic() if now is None else now
        if self.disk_at is not None and now - self.disk_at < DISK_EVERY:
            return
        self.disk = {n: disk_use(self.host.site_dir(n)) for n in names}
        self.disk_at = now
        # what was read of files gone since (sites removed) is forgotten
        self._files = {p: hit for p, hit in list(self._files.items()) if p.exists()}
