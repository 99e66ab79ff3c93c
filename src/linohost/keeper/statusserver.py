"""The keeper's own small HTTP server for ``/_linohost/``: a stdlib wsgiref server
on a unix socket (:func:`.paths.status_socket`), in one thread beside the keeper's
loop, answering one request at a time (scrapes are rare and cheap).

It serves ``/_linohost/metrics`` and the status page ``/_linohost/`` (read-only so
far); every request passes :class:`.access.Gate`.
"""
import os
import socket
import socketserver
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import paths, statuspage
from .access import Gate
from .metrics import KeeperCollector, last_backups

PREFIX = "/_linohost/"
MAX_BODY = 64 * 1024


def application(collector, gate, page=None):
    """The WSGI application: the metrics, and the status page (*page*: a callable
    returning its HTML), for whoever the gate lets in; 401 otherwise."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def app(environ, start_response):
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        metrics = path == PREFIX + "metrics"
        if not metrics and not (path == PREFIX and page):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if not gate.allows(environ, metrics=metrics):
            start_response("401 Unauthorized", [
                ("Content-Type", "text/plain"),
                ("WWW-Authenticate", 'Basic realm="linohost", charset="UTF-8"')])
            return [b"unauthorized\n"]
        if metrics:
            body, kind = generate_latest(registry), CONTENT_TYPE_LATEST
        else:
            body, kind = page().encode(), "text/html; charset=utf-8"
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store"),
                                  ("X-Frame-Options", "DENY"),
                                  ("X-Content-Type-Options", "nosniff")])
        return [body]
    return app


class _UnixWSGIServer(WSGIServer):
    address_family = socket.AF_UNIX

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()


class _Handler(WSGIRequestHandler):
    timeout = 10    # a slow client cannot hold the one thread for long

    def setup(self):
        self.client_address = ("unix", 0)   # a unix peer has no address; wsgiref wants one
        super().setup()

    def address_string(self):
        return "unix"

    def log_message(self, format, *args):
        pass        # the front server logs the access


def for_keeper(keeper):
    """The server of *keeper* (not yet started): its status rows and run/backups.json."""
    host = keeper.host
    def status():
        # Read from this thread while the loop runs: a dict may change under the
        # iteration (RuntimeError); read again, the loop does not hold it for long.
        for _ in range(4):
            try:
                return keeper.control.status({})
            except RuntimeError:
                time.sleep(0.01)
        return keeper.control.status({})
    backups = lambda: last_backups(host.backup_results)     # noqa: E731
    collector = KeeperCollector(status, backups=backups)
    app = application(collector, Gate(host), page=lambda: statuspage.page(status(), backups()))
    return StatusServer(paths.status_socket(host), app, web_gid=keeper.web_gid)


class StatusServer:
    """The server bound to *path* (owner and the web server's group only), running
    in a daemon thread."""

    def __init__(self, path, app, web_gid=None):
        path.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self.server = _UnixWSGIServer(str(path), _Handler)
        finally:
            os.umask(old)
        if web_gid is not None:
            os.chown(path, 0, web_gid)
        os.chmod(path, 0o660)
        self.server.set_app(app)
        self.path = path
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.5},
                                       name="status-server", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)
