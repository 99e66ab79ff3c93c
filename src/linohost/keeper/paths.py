"""Where the keeper's sockets and lock live in a host root."""

from pathlib import Path
from typing import NamedTuple


def sockets_dir(host):
    """One listening socket per site; only the keeper and the web server reach it."""
    return host.run_dir / "sockets"


def site_socket(host, name):
    return sockets_dir(host) / f"{name}.sock"


def ws_socket(host, name):
    """The websockets of a site with channels: bound by its worker while it runs
    (worker.WS_SOCKET, in the project), by the keeper's porch while it sleeps."""
    return host.site_dir(name) / "apache" / "ws.sock"


class SiteSockets(NamedTuple):
    """Where a web server sends a site's requests: HTTP, and its websockets (/WS/)."""
    http: Path
    ws: Path


def site_sockets(host, names):
    """{name: :class:`SiteSockets`} of the sites *names*."""
    return {n: SiteSockets(site_socket(host, n), ws_socket(host, n)) for n in names}


def control_socket(host):
    """Commands for the keeper (status, reload, restart): its owner only."""
    return host.run_dir / "keeper.sock"


def keeper_lock(host):
    return host.run_dir / "keeper.lock"


def zygotes_dir(host):
    """The zygotes' template projects (root's only)."""
    return host.run_dir / "zygotes"


def variants_file(host):
    """What sites told the keeper of their data (their zygote variants): root's only."""
    return host.run_dir / "keeper-variants.json"


def schedules_file(host):
    """When each site next has a background task, as its workers said: root's only."""
    return host.run_dir / "keeper-schedules.json"


def status_socket(host):
    """The keeper's own HTTP server for /_linohost/ (status page, metrics)."""
    return sockets_dir(host) / "_linohost.sock"


def history_file(host):
    """The status page's history of the last day (keeper/history.py): root's only."""
    return host.run_dir / "keeper-history.json"
