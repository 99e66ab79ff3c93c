"""Debian's nginx (package nginx) run by `linohost serve`, as the sites' front server.

Only the binary and ``/etc/nginx/mime.types`` are Debian's: the config, pid file
and temporary files are under ``ROOT/nginx/``, the logs in ``ROOT/logs``; the
system's nginx and ``/etc/nginx`` are never touched.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from ...errors import StepFailed, UsageError

#: What Debian's nginx writes before a message: "2026/12/05 07:00:00 [emerg] 12#12: ".
LOG_HEAD = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: (\*\d+ )?")


class OwnNginx:
    """nginx with its config under ``ROOT/nginx/run``, in the foreground."""

    name = "nginx"
    noun = "nginx"                 # in messages
    label = "Debian's nginx"       # for progress lines: which binary serves

    def __init__(self, host, binary="/usr/sbin/nginx", mime_types="/etc/nginx/mime.types"):
        self.host = host
        self.binary = Path(binary)
        self.mime_types = Path(mime_types)
        self.dir = host.root / "nginx"
        self.run_dir = self.dir / "run"
        self.htdocs = self.dir / "htdocs"
        self.conf = self.run_dir / "nginx.conf"
        self.sites_conf = self.run_dir / "sites.conf"
        self.pid_file = self.run_dir / "nginx.pid"
        self.error_log = host.logs_dir / "nginx-error.log"

    def dirs(self):
        """The directories it needs, world-readable (its workers may be another user)."""
        return (self.run_dir, self.htdocs, self.dir / "tmp")

    def check_installed(self):
        if not self.binary.exists():
            raise UsageError("web_server is nginx but nginx is not installed: "
                             "apt-get install nginx")

    def _args(self):
        return [str(self.binary), "-p", f"{self.dir}/", "-c", str(self.conf),
                "-e", str(self.error_log)]

    def configtest(self):
        """Raise StepFailed with nginx's message if the written config is invalid."""
        p = subprocess.run([*self._args(), "-t", "-q"], capture_output=True, text=True)
        if p.returncode != 0:
            raise StepFailed(f"nginx configtest failed: {first_error(p.stderr)}",
                             output=p.stderr)

    def popen(self):
        """Start nginx in the foreground, in its own session (Ctrl-C is ours to handle)."""
        return subprocess.Popen([*self._args(), "-g", "daemon off;"],
                                start_new_session=True, stdin=subprocess.DEVNULL)

    def running_pid(self):
        """The pid of an nginx left running from this root, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError):
            return None
        return pid if Path(exe).name == "nginx" else None

    def reload(self, proc, timeout=20):
        """Re-read the config (SIGHUP): new workers start, old ones finish their requests;
        return once a new worker runs."""
        before = _children(proc.pid)
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if _children(proc.pid) - before:
                return
            time.sleep(0.05)

    @staticmethod
    def log_message(line):
        """*line* of its error log without the time, level and pid."""
        return LOG_HEAD.sub("", line.strip())


def first_error(text):
    """nginx's error in one line: the first [emerg] (or other) line, without its head."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "[emerg]" in ln or "[alert]" in ln:
            return ln.split("] ", 1)[-1]
    return lines[0] if lines else "no output"


def _children(pid):
    """The pids of *pid*'s children (its workers)."""
    try:
        return set(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return set()
