"""Apache httpd and mod_wsgi from PyPI (mod-wsgi-standalone), for machines without
Debian's apache2 package.

Installed on first use into ``ROOT/apache/venv`` with the host's Python (the
one the site user can read), so no root and no system package is needed.
"""

import glob
import os
import subprocess
from pathlib import Path

from ...errors import UsageError
from ...fs import remove_tree
from .base import OwnApache, python_version

PACKAGE = "mod-wsgi-standalone"


class EmbeddedApache(OwnApache):
    label = f"Apache from PyPI ({PACKAGE})"

    def __init__(self, host):
        super().__init__(host)
        self.venv = self.dir / "venv"
        self._ready = self.venv / ".linohost-ready"

    # -- installation ----------------------------------------------------------
    def installed(self):
        return self._ready.exists()

    def install(self, system, progress):
        """Create the venv and pip-install mod-wsgi-standalone (builds httpd: minutes)."""
        python = self.host.cfg["python"]
        progress(f"installing Apache httpd and mod_wsgi ({PACKAGE}) into {self.venv}; "
                 f"the first time this builds Apache and takes a few minutes")
        remove_tree(self.venv)           # a half-made one from an interrupted install
        for d in (self.dir, self.run_dir, self.htdocs):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        try:
            system.run([python, "-m", "venv", self.venv], what="python -m venv")
            pip = [self.venv / "bin" / "pip", "install", "--disable-pip-version-check", "-q"]
            # A current pip builds a wheel and caches it: the next install takes seconds.
            system.run([*pip, "-U", "pip", "wheel"], what="pip install -U pip")
            system.run([*pip, PACKAGE], what=f"pip install {PACKAGE}", timeout=1800)
        except BaseException:
            remove_tree(self.venv)
            raise
        self._ready.write_text(PACKAGE + "\n")

    # -- what it provides --------------------------------------------------------
    @property
    def server_root(self):
        found = glob.glob(f"{self.venv}/lib/python3*/site-packages/mod_wsgi_packages/httpd")
        if not found:
            raise UsageError(f"no httpd in {self.venv}: remove {self.venv} and run serve again")
        return Path(found[0])

    @property
    def httpd(self):
        return self.server_root / "bin" / "httpd"

    @property
    def mime_types(self):
        return self.server_root / "conf" / "mime.types"

    def python_version(self):
        return python_version(self.venv / "bin" / "python")

    def python_home(self):
        return self.venv

    def module_path(self, name):
        if name == "wsgi":
            p = subprocess.run([str(self.venv / "bin" / "mod_wsgi-express"), "module-location"],
                               capture_output=True, text=True, check=True)
            return p.stdout.strip()
        so = self.server_root / "modules" / f"mod_{name}.so"
        return so if so.exists() else None         # others may be compiled in

    def env(self):
        env = dict(os.environ)
        lib = str(self.server_root / "lib")
        env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"]
                                        if env.get("LD_LIBRARY_PATH") else "")
        return env
