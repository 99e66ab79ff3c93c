"""Apache httpd and mod_wsgi from PyPI (mod-wsgi-standalone), run by `linohost serve`.

Installed on first use into ``ROOT/apache/venv`` with the host's Python (the
one the site user can read), so no root and no system package is needed.
"""

import glob
import os
import subprocess
from pathlib import Path

from ...errors import StepFailed, UsageError
from ...apply.files import remove_tree

PACKAGE = "mod-wsgi-standalone"
#: Apache modules the vhosts need, besides mod_wsgi.
MODULES = ("mpm_event", "unixd", "authz_core", "alias", "mime", "dir", "log_config")


class EmbeddedApache:
    def __init__(self, host):
        self.host = host
        self.dir = host.root / "apache"
        self.venv = self.dir / "venv"
        self.run_dir = self.dir / "run"
        self.htdocs = self.dir / "htdocs"
        self.conf = self.run_dir / "httpd.conf"
        self.sites_conf = self.run_dir / "sites.conf"
        self.pid_file = self.run_dir / "httpd.pid"
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
    def httpd_root(self):
        found = glob.glob(f"{self.venv}/lib/python3*/site-packages/mod_wsgi_packages/httpd")
        if not found:
            raise UsageError(f"no httpd in {self.venv}: remove {self.venv} and run serve again")
        return Path(found[0])

    @property
    def httpd(self):
        return self.httpd_root / "bin" / "httpd"

    def python_version(self):
        return python_version(self.venv / "bin" / "python")

    def module_lines(self):
        """LoadModule lines: httpd's own modules, then mod_wsgi for the venv's Python."""
        lines = []
        for m in MODULES:
            so = self.httpd_root / "modules" / f"mod_{m}.so"
            if so.exists():                        # others may be compiled in
                lines.append(f'LoadModule {m}_module "{so}"')
        p = subprocess.run([str(self.venv / "bin" / "mod_wsgi-express"), "module-config"],
                           capture_output=True, text=True, check=True)
        lines += [ln for ln in p.stdout.splitlines() if ln.startswith("LoadModule")]
        # Apache's own processes run no Python (WSGIRestrictEmbedded), but mod_wsgi
        # still initialises one: give it this venv.
        lines.append(f'WSGIPythonHome "{self.venv}"')
        lines.append(f'WSGISocketPrefix "{self.run_dir}/wsgi"')
        return lines

    @property
    def mime_types(self):
        return self.httpd_root / "conf" / "mime.types"

    # -- running -------------------------------------------------------------------
    def configtest(self):
        """Raise StepFailed with Apache's message if the written config is invalid."""
        p = subprocess.run([str(self.httpd), "-t", "-f", str(self.conf)],
                           capture_output=True, text=True, env=_httpd_env(self.httpd_root))
        if p.returncode != 0:
            out = (p.stderr or p.stdout).strip().splitlines()
            raise StepFailed(f"Apache configtest failed: {out[0] if out else p.returncode}",
                             output=p.stderr)

    def popen(self):
        """Start httpd in the foreground, in its own session (Ctrl-C is ours to handle)."""
        return subprocess.Popen([str(self.httpd), "-f", str(self.conf), "-DFOREGROUND"],
                                env=_httpd_env(self.httpd_root), start_new_session=True,
                                stdin=subprocess.DEVNULL)

    def running_pid(self):
        """The pid of an httpd left running from this root, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError):
            return None
        return pid if Path(exe).name == "httpd" else None


def _httpd_env(httpd_root):
    env = dict(os.environ)
    lib = str(httpd_root / "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def python_version(python):
    p = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                       capture_output=True, text=True)
    return p.stdout.strip()


def readable_by_all(path):
    """Whether every user can reach and read *path* (and run it, for a program)."""
    path = Path(path).resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o004)
