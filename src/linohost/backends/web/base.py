"""What every Apache run by `linohost serve` has in common.

Each has its own server root and config under ``ROOT/apache/`` (never the
system's ``/etc/apache2``); the subclasses say where the binary and its modules
come from: :class:`~.debian.DebianApache` (Debian's apache2 package) or
:class:`~.embedded.EmbeddedApache` (built from PyPI).
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from ...errors import StepFailed
from ...model.names import SITE_NAME_MAX

#: Modules every vhosts file needs, whatever the process backend (Debian names).
BASE_MODULES = ("mpm_event", "unixd", "authz_core", "mime", "dir", "log_config")
#: Room for "(wsgi:SITE)" with the longest site name.
ARGV0_LENGTH = len("(wsgi:)") + SITE_NAME_MAX + 8


class OwnApache:
    """An Apache with its config, pid file and sockets in ``ROOT/apache/run``."""

    name = "apache"
    noun = "Apache"                # in messages
    label = "Apache"               # for progress lines: which binary serves

    def __init__(self, host):
        self.host = host
        self.error_log = host.logs_dir / "apache-error.log"
        self.dir = host.root / "apache"
        self.run_dir = self.dir / "run"
        self.htdocs = self.dir / "htdocs"
        self.conf = self.run_dir / "httpd.conf"
        self.sites_conf = self.run_dir / "sites.conf"
        self.pid_file = self.run_dir / "httpd.pid"

    # -- what a subclass provides ------------------------------------------------
    httpd: Path                    # the binary
    server_root: Path              # its ServerRoot
    mime_types: Path

    def installed(self):
        raise NotImplementedError

    def install(self, system, progress):
        raise NotImplementedError

    def module_path(self, name):
        """The .so of module *name* (Debian name, e.g. "proxy_http"), or None if
        compiled in or missing."""
        raise NotImplementedError

    def python_version(self):
        """"3.11": the Python its mod_wsgi is built for."""
        raise NotImplementedError

    def python_home(self):
        """WSGIPythonHome for Apache's own (Python-free) processes, or None."""
        return None

    def env(self):
        """Environment of the httpd process."""
        return dict(os.environ)

    # -- common ------------------------------------------------------------------
    def module_lines(self, modules):
        """LoadModule lines for *modules*, plus mod_wsgi's server lines when "wsgi" is one."""
        lines = []
        for m in modules:
            so = self.module_path(m)
            if so is not None:
                lines.append(f'LoadModule {m}_module "{so}"')
        if "wsgi" in modules:
            # Apache's own processes run no Python (WSGIRestrictEmbedded), but
            # mod_wsgi still initialises one.
            if self.python_home():
                lines.append(f'WSGIPythonHome "{self.python_home()}"')
            lines.append(f'WSGISocketPrefix "{self.run_dir}/wsgi"')
        return lines

    def configtest(self):
        """Raise StepFailed with Apache's message if the written config is invalid."""
        p = subprocess.run([str(self.httpd), "-t", "-d", str(self.server_root),
                            "-f", str(self.conf)], capture_output=True, text=True,
                           env=self.env())
        if p.returncode != 0:
            out = [ln.strip() for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
            raise StepFailed(f"Apache configtest failed: {' '.join(out) or p.returncode}",
                             output=p.stderr)

    def argv0(self):
        """The program name httpd is started with: mod_wsgi writes a daemon's display
        name (``(wsgi:SITE)``) over it and cuts the name to its length, so pad it
        ("/usr/sbin/apache2" would leave 10 characters of a site's name in `ps`)."""
        return str(self.httpd).ljust(ARGV0_LENGTH)

    def popen(self):
        """Start httpd in the foreground, in its own session (Ctrl-C is ours to handle)."""
        return subprocess.Popen([self.argv0(), "-d", str(self.server_root),
                                 "-f", str(self.conf), "-DFOREGROUND"],
                                executable=str(self.httpd), env=self.env(),
                                start_new_session=True,
                                stdin=subprocess.DEVNULL)

    def dirs(self):
        """The directories it needs, world-readable (its children may be another user)."""
        return (self.run_dir, self.htdocs)

    def reload(self, proc, timeout=20):
        """Restart gracefully (SIGUSR1); return once it says it serves the new config."""
        start = self.error_log.stat().st_size if self.error_log.exists() else 0
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            with open(self.error_log, "rb") as f:
                f.seek(start)
                if b"resuming normal operations" in f.read():
                    return
            time.sleep(0.05)

    @staticmethod
    def log_message(line):
        """*line* of its error log without Apache's "[time] [module:level] [pid N:tid N] "."""
        return re.sub(r"^(\[[^]]*\] *)+", "", line.strip())

    def running_pid(self):
        """The pid of an httpd left running from this root, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError):
            return None
        return pid if Path(exe).name in ("httpd", "apache2") else None


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
