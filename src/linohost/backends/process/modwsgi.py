"""Each site in its own mod_wsgi daemon process inside Apache."""

import os
import re
from pathlib import Path

from ... import processes
from ...render import render


class ModWsgi:
    """One ``WSGIDaemonProcess`` per site, with the Python of its environment."""

    name = "mod_wsgi"
    apache_modules = ("wsgi", "alias")      # Debian module names to enable

    def __init__(self, cfg, *, user=None, group=None, run_as=None, host=None):
        self.host = host
        self.threads = cfg["apache.threads"]
        self.inactivity_timeout = cfg["apache.inactivity_timeout"]
        self.run_as = run_as or (lambda site: (user, group))

    def server_directives(self):
        # No Python in Apache's own processes: only the site daemons run it.
        return "WSGIRestrictEmbedded On"

    def host_directives(self):
        return ""   # no keeper: no /_linohost/

    def site_directives(self, mount):
        user, group = self.run_as(mount.name)
        return render("apache/modwsgi_site.conf.j2", m=mount, threads=self.threads,
                      inactivity_timeout=self.inactivity_timeout,
                      user=user, group=group).rstrip("\n")

    def restart_site(self, name):
        """Restart only the daemon of site *name*: mod_wsgi restarts it when its
        wsgi.py changes (at its next request)."""
        os.utime(self.host.site_dir(name) / "apache" / "wsgi.py")

    def status(self, names):
        """One row per site: running if a daemon of it runs, else sleeping
        (mod_wsgi counts neither requests nor starts)."""
        pids = daemon_pids()
        out = []
        for n in names:
            pid = pids.get(n)
            out.append({"name": n, "state": "running" if pid else "sleeping", "pid": pid,
                        "uptime_s": _uptime(pid), "requests": None, "last_request": None,
                        "cold_starts": None, "last_failure": None, "start": None,
                        "plain_reason": None, "next_job": None, "job_wakes": None,
                        "queued_s": None,
                        **processes.memory_of(pid)})
        return out


def daemon_pids():
    """{site: pid} of the running mod_wsgi daemons (display-name ``(wsgi:SITE)``)."""
    pids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        m = re.match(r"\(wsgi:(\w+)\)", cmdline.strip())
        if m:
            pids[m.group(1)] = int(d.name)
    return pids


def _uptime(pid):
    if not pid:
        return None
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot_uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(boot_uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 1)
