"""The keeper's own small HTTP server for ``/_linohost/``: a stdlib wsgiref server
on a unix socket (:func:`.paths.status_socket`), in one thread beside the keeper's
loop, answering one request at a time (scrapes are rare and cheap).

It serves ``/_linohost/metrics``, the status page ``/_linohost/`` and its actions
(``sites/SITE/wake|sleep|backup``, POST; ``sites/SITE/log``); every request passes
:class:`.access.Gate`. Beside it runs the thread that samples the page's history
(:class:`.sampler.Sampler`).
"""
import os
import re
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import control, paths, statuspage
from .access import Gate
from .actions import ActionError
from .history import History
from .metrics import KeeperCollector, last_backups
from .sampler import Sampler
from .sitefacts import SiteFacts

PREFIX = "/_linohost/"
MAX_BODY = 64 * 1024


#: ``sites/SITE/ACTION`` under the prefix: POST to act, GET for the log.
SITE_PATH = re.compile(r"sites/(?P<site>[A-Za-z0-9_-]+)/(?P<action>wake|sleep|backup|log)")


def application(collector, gate, page=None, actions=None):
    """The WSGI application: the metrics; the status page (*page*: a callable
    returning its HTML) and its actions (:class:`.actions.Actions`), for whoever the
    gate lets in; 401 otherwise. An action answers with a redirect to the page (it
    works without JavaScript); one posted from another origin is refused."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def app(environ, start_response):
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        metrics = path == PREFIX + "metrics"
        site = SITE_PATH.fullmatch(path[len(PREFIX):]) if path.startswith(PREFIX) else None
        if metrics or (path == PREFIX and page) or (site and site["action"] == "log"):
            allowed = ("GET", "HEAD")
        elif site and actions:
            allowed = ("POST",)
        else:
            return _answer(start_response, "404 Not Found", b"not found\n")
        if method not in allowed:
            return _answer(start_response, "405 Method Not Allowed", b"",
                           [("Allow", ", ".join(allowed))])
        if not gate.allows(environ, metrics=metrics):
            return _answer(start_response, "401 Unauthorized", b"unauthorized\n",
                           [("WWW-Authenticate", 'Basic realm="linohost", charset="UTF-8"')])
        if metrics:
            return _answer(start_response, "200 OK", generate_latest(registry),
                           kind=CONTENT_TYPE_LATEST)
        if not site:
            return _answer(start_response, "200 OK", page().encode(),
                           kind="text/html; charset=utf-8")
        name, action = site["site"], site["action"]
        if method == "POST" and not _same_origin(environ):
            return _answer(start_response, "403 Forbidden", b"not from this page\n")
        try:
            if action == "log":
                return _answer(start_response, "200 OK", actions.log(name).encode(),
                               kind="text/plain; charset=utf-8")
            getattr(actions, action)(name)
        except ActionError as e:
            return _answer(start_response, "409 Conflict", f"{e}\n".encode())
        except (control.NotRunning, OSError) as e:
            return _answer(start_response, "503 Service Unavailable",
                           f"the keeper does not answer: {e}\n".encode())
        return _answer(start_response, "303 See Other", b"", [("Location", PREFIX)])
    return app


def _answer(start_response, status, body, headers=(), kind="text/plain; charset=utf-8"):
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"),
                            ("X-Content-Type-Options", "nosniff"), *headers])
    return [body]


def _same_origin(environ):
    """Whether a browser's POST comes from a page of this host (it sends Origin with
    every POST; a client without one is no browser another site could drive). The
    front server sets X-Forwarded-Host (Apache appends to a client's: the last)."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
    return urlsplit(origin).netloc == host.split(",")[-1].strip()


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
    """The server of *keeper* (not yet started): its status rows, run/backups.json,
    the history (run/keeper-history.json, kept by its sampler) and the sites' facts."""
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
    interval = lambda: host.cfg["keeper.history_interval"]  # noqa: E731 - as it is now
    facts = SiteFacts(host)
    history = History.load(paths.history_file(host))
    sampler = Sampler(status, history, paths.history_file(host), interval, facts=facts)
    collector = KeeperCollector(status, backups=backups, certificates=facts.certificates)
    app = application(collector, Gate(host), actions=keeper.actions,
                      page=lambda: statuspage.page(status(), backups(),
                                                   busy=keeper.actions.busy(),
                                                   history=history, facts=facts,
                                                   interval=interval()))
    return StatusServer(paths.status_socket(host), app, web_gid=keeper.web_gid,
                        sampler=sampler)


class StatusServer:
    """The server bound to *path* (owner and the web server's group only), running
    in a daemon thread, and its *sampler* (started and closed with it)."""

    def __init__(self, path, app, web_gid=None, sampler=None):
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
        self.path, self.sampler = path, sampler
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.5},
                                       name="status-server", daemon=True)

    def start(self):
        self.thread.start()
        if self.sampler is not None:
            self.sampler.start()
        return self

    def close(self):
        if self.sampler is not None:
            self.sampler.close()
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)
