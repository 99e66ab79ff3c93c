"""Where the keeper's sockets and lock live in a host root."""


def sockets_dir(host):
    """One listening socket per site; only the keeper and the web server reach it."""
    return host.run_dir / "sockets"


def site_socket(host, name):
    return sockets_dir(host) / f"{name}.sock"


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
