"""Each site in its own mod_wsgi daemon process inside Apache."""

import os
from pathlib import Path

from ...render import render


class ModWsgi:
    """One ``WSGIDaemonProcess`` per site, with the Python of its environment."""

    name = "mod_wsgi"
    apache_modules = ("wsgi", "alias")      # Debian module names to enable

    def __init__(self, cfg, *, user=None, group=None):
        self.threads = cfg["apache.threads"]
        self.inactivity_timeout = cfg["apache.inactivity_timeout"]
        self.user, self.group = user, group

    def server_directives(self):
        # No Python in Apache's own processes: only the site daemons run it.
        return "WSGIRestrictEmbedded On"

    def site_directives(self, mount):
        return render("apache/modwsgi_site.conf.j2", m=mount, threads=self.threads,
                      inactivity_timeout=self.inactivity_timeout,
                      user=self.user, group=self.group).rstrip("\n")

    @staticmethod
    def restart_site(project):
        """Restart only the daemon of the site in *project*: mod_wsgi restarts it
        when its wsgi.py changes (at its next request)."""
        os.utime(Path(project) / "apache" / "wsgi.py")
