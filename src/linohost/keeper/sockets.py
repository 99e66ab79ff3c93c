"""The keeper's listening sockets, one per site, in ROOT/run/sockets/."""

import os
import socket

from . import paths

#: Connections a site's socket holds while no worker accepts them.
BACKLOG = 1024


def prepare_dirs(host, web_gid):
    """The sockets' directory: the web server's group may pass and connect, nobody else."""
    d = paths.sockets_dir(host)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(host.run_dir, 0o711)  # others may pass through to sockets/, not list
    (host.logs_dir / "sites").mkdir(parents=True, exist_ok=True)
    if web_gid is not None:        # the web server's group may connect, nobody else
        os.chown(d, 0, web_gid)
        os.chmod(d, 0o750)
    else:
        os.chmod(d, 0o700)


def bind(host, name, web_gid):
    """*name*'s listening socket, bound before any worker runs (connections wait in its
    backlog)."""
    path = paths.site_socket(host, name)
    path.unlink(missing_ok=True)        # left by a keeper that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if web_gid is not None:
        os.chown(path, 0, web_gid)
    os.chmod(path, 0o660)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock
