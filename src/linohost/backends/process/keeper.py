"""Each site in a worker of the linohost keeper, reached through a unix socket.

Apache proxies a site's URLs (mod_proxy_http) to the socket the keeper holds
for it and still serves media/ and static files itself. Workers are the
keeper's children, not Apache's: reloading Apache restarts no site.
"""

from ...keeper import control, paths
from ... import processes
from ...render import render


class Keeper:
    name = "keeper"
    apache_modules = ("proxy", "proxy_http", "headers", "alias")

    def __init__(self, cfg, *, user=None, group=None, run_as=None, host=None):
        self.host = host
        self.timeout = cfg["keeper.proxy_timeout"]

    def server_directives(self):
        # The Host header as the browser sent it; the scheme from the vhost. Apache
        # appends the client's address to X-Forwarded-For itself; the worker trusts
        # only the last address (the one Apache added).
        return "\n".join((
            "ProxyPreserveHost On",
            'RequestHeader set X-Forwarded-Proto "expr=%{REQUEST_SCHEME}"',
        ))

    def site_directives(self, mount):
        return render("apache/keeper_site.conf.j2", m=mount, timeout=self.timeout,
                      socket=paths.site_socket(self.host, mount.name),
                      ws_socket=paths.ws_socket(self.host, mount.name)).rstrip("\n")

    def host_directives(self):
        """/_linohost/ (status page, metrics) to the keeper's own server. Apache
        appends the client's address to any X-Forwarded-For: the keeper trusts a
        single loopback address only (keeper/access.py)."""
        return (f'ProxyPass "/_linohost/" "unix:{paths.status_socket(self.host)}'
                '|http://localhost/_linohost/" disablereuse=On retry=0 timeout=30')

    def restart_site(self, name):
        """A new worker for *name* at its next request (nothing if no keeper runs)."""
        try:
            control.call(self.host, "restart", site=name)
        except (control.NotRunning, OSError):
            pass

    def zygotes(self):
        """One row per zygote of the running keeper (none if it does not run)."""
        try:
            rows = control.call(self.host, "status").get("zygotes", [])
        except (control.NotRunning, OSError):
            return []
        return [{**r, **processes.memory_of(r["pid"])} for r in rows]

    def status(self, names):
        """One row per site (see `linohost status`)."""
        try:
            reply = control.call(self.host, "status")
        except (control.NotRunning, OSError):
            reply = {"sites": [], "fence": None}
        rows = {r["name"]: r for r in reply["sites"]}
        out = []
        for n in names:
            r = rows.get(n) or {"name": n, "state": "sleeping", "pid": None, "uptime_s": None,
                                "requests": None, "last_request": None, "cold_starts": None,
                                "last_failure": None, "start": None, "plain_reason": None,
                                "next_job": None, "job_wakes": None, "queued_s": None}
            out.append({**r, **processes.memory_of(r["pid"]), "fence": reply.get("fence")})
        return out
