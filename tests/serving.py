"""`linohost serve` under test: started, reached (NAME.localhost too), stopped."""

import os
import signal
import socket
import subprocess
import time
import tomllib

import requests
import tomli_w

from runner import LINOHOST

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_localhost_names():
    """Let this process reach NAME.localhost as a browser does (glibc does not)."""
    import urllib3.util.connection as conn
    if getattr(conn, "_linohost_patched", False):
        return
    real = conn.create_connection

    def create_connection(address, *args, **kw):
        host, port = address
        if host == "localhost" or host.endswith(".localhost"):
            host = "127.0.0.1"
        return real((host, port), *args, **kw)
    conn.create_connection = create_connection
    conn._linohost_patched = True


class Server:
    """A running `linohost serve`."""

    def __init__(self, host, port, proc, backend=None):
        self.host, self.port, self.proc = host, port, proc
        self.backend = backend
        self.base = f"http://127.0.0.1:{port}"

    def url(self, site_or_domain, path=""):
        """URL of a prefix site (its name) or a domain site (its host name)."""
        if "." in site_or_domain:
            return f"http://{site_or_domain}:{self.port}/{path}"
        return f"{self.base}/{site_or_domain}/{path}"


def start_serve(h, port, timeout=900):
    """Start `linohost serve` on *port* and wait until its landing page answers."""
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    log = open(h.root.parent / f"serve-{port}.log", "w")
    proc = subprocess.Popen([*LINOHOST, "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: "
                                 + (h.root.parent / f"serve-{port}.log").read_text())
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                return Server(h, port, proc)
        except requests.ConnectionError:
            pass
        time.sleep(1)
    proc.kill()
    raise AssertionError("serve did not answer in time")


def announced(h, port, text, timeout=60):
    """Wait until `serve`'s output (start_serve's log) contains *text*; return it.
    (The landing page may answer a moment before `serve` says so.)"""
    log = h.root.parent / f"serve-{port}.log"
    deadline = time.monotonic() + timeout
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    return log.read_text()


def stop_serve(server, sig=None):
    server.proc.send_signal(sig or signal.SIGTERM)
    return server.proc.wait(60)


#: The process backends; every test that serves runs under each.
BACKENDS = ("keeper", "mod_wsgi")


def use_backend(h, backend):
    """Switch the session's host to *backend* as an operator editing linohost.toml
    would (`init --process-backend` would also rewrite every site's settings from
    the host config, which some tests change for a while)."""
    path = h.root / "linohost.toml"
    data = tomllib.loads(path.read_text())
    if data.get("process_backend", "keeper") != backend:
        path.write_text(tomli_w.dumps({**data, "process_backend": backend}))
