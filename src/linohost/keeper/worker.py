"""A site worker: runs *inside* the site's environment (shipped, see shipped.py),
serves one site.

The keeper starts it as the site's user with the site's listening unix socket
already bound and listening (inherited, its number in LINOHOST_LISTEN_FD), a pipe
to report on (LINOHOST_STATUS_FD) and its start request (protocol.py) in
LINOHOST_START; or a zygote forks it (zygote.py). It loads the site's own apache/wsgi.py
(the same entry point as under mod_wsgi) and serves it with waitress, in this
process, with threads. It leaves

- with exit code 0 after the request's ``idle_timeout`` seconds without a request
  (0: never) or on SIGTERM, after finishing every connection it has accepted
  (connections not yet accepted stay in the socket's backlog for the next worker);
- with exit code 3 if the site cannot be loaded ("failed to boot": the keeper
  backs off instead of starting it again at once).

Reports on the status pipe, one line each (the words of protocol.py): ``ready``,
then ``stats`` and ``done`` (requests, their answers and how long they took)
whenever they changed (at most once a second; a request's start at once), for a
site with channels ``live`` likewise, and ``next_job`` whenever it changed.

With the request's ``jobs`` it also runs the site's scheduled background tasks
(jobs.py) and does not leave on idle while one runs; with ``jobs["for_jobs"]``
(started for a job, not a request) it leaves as soon as the jobs are done, unless a
request came meanwhile. It imports nothing of linohost but its shipped modules.
"""
import bisect
import ctypes
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import linohost_protocol as protocol
from linohost_unheard import Unheard

#: Modules a worker does without: PyMuPDF imports onnxruntime for its optional layout
#: analysis (which Lino does not use); it starts threads at import, which a process
#: that forks must not have, and costs every worker its memory. PyMuPDF works
#: without it. Applied to every worker, forked or not, so both are the same.
NOT_IMPORTED = ("onnxruntime",)
#: No thread pools in numerical libraries either (nor in a zygote).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class _NotImported:
    """A meta path finder that lets the modules of NOT_IMPORTED fail to import."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in NOT_IMPORTED:
            raise ImportError(f"{name} is not imported in a linohost worker")
        return None


def without_threads_at_import():
    """Keep what is imported from starting threads (before anything is imported)."""
    for k, v in ONE_THREAD.items():
        os.environ.setdefault(k, v)
    sys.meta_path.insert(0, _NotImported())


def log(message):
    sys.stderr.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] worker {os.getpid()}: {message}\n")
    sys.stderr.flush()


def die_with_keeper(keeper_pid):
    """Leave when the keeper dies (gently: SIGTERM lets requests finish), and do not
    start at all if it died already."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
    if os.getppid() != keeper_pid:
        os._exit(0)


def load_application(project):
    spec = importlib.util.spec_from_file_location("linohost_site_wsgi",
                                                  project / "apache" / "wsgi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.application


def start_jobs(jobs):
    """The site's background tasks in a thread (linohost's jobs.py)."""
    if not jobs:
        return None
    try:
        import linohost_jobs
        return linohost_jobs.start(log, min_interval=jobs["min_interval"])
    except Exception:          # the site still serves; its tasks wait
        log(f"cannot run background tasks:\n{traceback.format_exc()}")
        return None


class Activity:
    """Counts requests, their answers by class and how long they took, and knows when
    the last one ended (thread-safe). Tells the keeper (``stats`` and ``done`` lines, at
    most once a second): a request's start at once when it can, so that the keeper
    knows the least recently used workers when it must let one go."""

    def __init__(self, status):
        self.lock = threading.Lock()
        self.status = status
        self.active = 0
        self.requests = 0
        self.last = time.time()
        self.last_request = None
        self.classes = [0] * 5                  # 1xx .. 5xx
        self.buckets = [0] * (len(protocol.LATENCY_BUCKETS) + 1)
        self.seconds = 0.0
        self.reported = (0, None, 0)
        self.next_report = 0.0

    def wrap(self, app):
        def counted(environ, start_response):
            with self.lock:
                self.active += 1
                self.requests += 1
                self.last = self.last_request = t0 = time.time()
                self.report()
            code = []

            def started(status, headers, exc_info=None):
                code[:] = [int(status[:3])]
                return start_response(status, headers, exc_info)
            try:
                return _Closing(app(environ, started), lambda: self.done(t0, code))
            except BaseException:
                self.done(t0, [500])                # the server answers 500
                raise
        return counted

    def done(self, t0, code):
        """A request ended: *code* holds its status (none: the server's 500)."""
        with self.lock:
            self.active -= 1
            self.last = time.time()
            self.classes[min(max((code or [500])[0] // 100, 1), 5) - 1] += 1
            took = self.last - t0
            self.seconds += took
            self.buckets[bisect.bisect_left(protocol.LATENCY_BUCKETS, took)] += 1

    def report(self, final=False):
        """(Holding the lock.) ``stats`` and ``done`` lines when they changed, unless
        some went out in the last second (the main loop sends what is left)."""
        now_said = (self.requests, self.last_request, sum(self.classes))
        now = time.time()
        if now_said != self.reported and (final or now >= self.next_report):
            _say(self.status, protocol.STATS, self.requests, self.last_request or 0)
            if now_said[2] != self.reported[2]:
                _say(self.status, protocol.DONE, *self.classes, round(self.seconds, 6),
                     *self.buckets)
            self.reported, self.next_report = now_said, now + 1


class _Closing:
    """The application's iterable, calling *on_close* once the server closes it
    (after the iterable's own close(): Django ends its request there)."""

    def __init__(self, inner, on_close):
        self.inner, self.on_close = inner, on_close

    def __iter__(self):
        return iter(self.inner)

    def close(self):
        try:
            if hasattr(self.inner, "close"):
                self.inner.close()
        finally:
            self.on_close()


#: Where a site with channels takes its websockets (the web server routes /WS/ there).
WS_SOCKET = "apache/ws.sock"


def uses_channels():
    """Whether the loaded site uses Lino's channels (Noi: ``linod.use_channels``)."""
    from django.conf import settings
    linod = getattr(settings.SITE.plugins, "linod", None)
    return bool(linod and linod.use_channels and getattr(settings, "ASGI_APPLICATION", ""))


class Live:
    """Lino's live features of a site with channels, beside its WSGI server: the
    websockets of /WS/ (Lino's ASGI application, served by uvicorn) and its channel
    worker (the ``linod_SITE`` messages: panel updates, web push), in an event loop
    of a thread of their own, started after the fork (a zygote has no loop, no thread).

    The websockets have a socket of their own, bound by this worker in the project
    (:data:`WS_SOCKET`) over the keeper's porch (keeper/porch.py, which holds a sleeping
    site's websockets and hands them over once this worker says ``live``). Only HTTP
    requests keep the site awake (they count in :class:`Activity`); when the worker
    leaves, its websockets close with 1012 ("service restart") and browsers reconnect,
    to the porch. What this worker sends before the handed-over websockets joined
    their groups waits for them (:mod:`linohost_unheard`)."""

    def __init__(self, project):
        self.project = project
        self.path = project / WS_SOCKET
        self.open = 0                       # websockets now
        self.messages = 0                   # channel messages handled
        self.server = None
        self.thread = None

    def start(self):
        """Bind the websocket socket (atomically over a stale one) and serve it."""
        tmp = self.path.with_name(f"ws.{os.getpid()}.sock")
        if tmp.exists():
            tmp.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(tmp))
        os.chmod(tmp, 0o666)                # the project directory keeps others out
        self.sock.listen(128)
        os.replace(tmp, self.path)
        self.inode = os.stat(self.path).st_ino
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="live",
                                       daemon=True)
        self.thread.start()
        ready.wait(30)

    def _run(self, ready):
        import asyncio
        try:
            asyncio.run(self._serve(ready))
        except BaseException:               # the site still serves HTTP
            log(f"live features stopped:\n{traceback.format_exc()}")
            ready.set()

    async def _serve(self, ready):
        import asyncio
        import uvicorn
        from channels.layers import get_channel_layer
        from channels.routing import get_default_application
        from channels.worker import Worker
        from django.conf import settings
        from lino.modlib.linod.utils import CHANNEL_NAME
        lino = get_default_application()
        prefix = settings.SITE.site_prefix

        async def websockets(scope, receive, send):
            if scope["type"] != "websocket":            # /WS/ only: HTTP goes to WSGI
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"not found"})
                return
            path = scope["path"]
            if prefix != "/" and path.startswith(prefix):   # Lino's route is ^WS/$
                scope = {**scope, "path": "/" + path[len(prefix):]}
            self.open += 1
            try:
                await lino(scope, receive, send)
            finally:
                self.open -= 1

        async def channel(scope, receive, send):
            async def counted():
                message = await receive()
                self.messages += 1
                return message
            await lino(scope, counted, send)

        config = uvicorn.Config(websockets, lifespan="off", http="h11", ws="wsproto",
                                log_config=None, access_log=False, ws_ping_interval=20,
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        layer = get_channel_layer()
        Unheard(layer)                  # what a just-woken site says before its tabs are back
        worker = Worker(application=channel, channels=[CHANNEL_NAME], channel_layer=layer)
        tasks = [asyncio.ensure_future(worker.handle()),
                 asyncio.ensure_future(worker.application_checker())]
        ready.set()
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            for t in tasks:
                t.cancel()

    def leave(self):
        """Accept no more websockets, close the open ones (1012)."""
        if self.server is not None:
            self.server.should_exit = True

    def close(self, timeout=10):
        """Once left: wait for the thread; the socket file goes if it is still ours."""
        self.leave()
        if self.thread is not None:
            self.thread.join(timeout)
        try:
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self.sock.close()


def main():
    """A plain start: this process loads the site and serves it."""
    request = json.loads(os.environ.pop(protocol.START))
    die_with_keeper(request["keeper_pid"])
    without_threads_at_import()
    project = Path(request["project"])
    # Lino takes a "-c" argv[0] for a doctest (see siteinit.py): look like a server.
    sys.argv = ["linohost-worker", str(project)]
    status = os.fdopen(int(os.environ.pop("LINOHOST_STATUS_FD")), "w", buffering=1)
    sock = socket.socket(fileno=int(os.environ.pop("LINOHOST_LISTEN_FD")))
    try:
        app = load_application(project)
    except BaseException:
        log(f"cannot load site {project.name}:\n{traceback.format_exc()}")
        os._exit(protocol.BOOT_FAILED)
    serve(project, app, sock, status, request)


def serve(project, app, sock, status, request):
    """Serve *app* on the listening *sock* as the start *request* says (protocol.py)
    until idle or told to stop, running the site's background tasks if it has
    ``jobs``; then leave the process (``os._exit``) after Lino's shutdown."""
    if request.get("probe"):
        run_probe(app, request["probe"])
    threads, idle_timeout = request["threads"], request["idle_timeout"]
    grace, jobs = request["grace"], request.get("jobs")
    for_jobs = bool(jobs and jobs["for_jobs"])
    jobs = start_jobs(jobs)
    live = Live(project) if uses_channels() else None
    if live:
        live.start()
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress import wasyncore

    activity = Activity(status)
    server = create_server(
        activity.wrap(app), sockets=[sock], threads=threads, ident=None,
        # Only the web server can reach the socket: trust what it says about
        # the client (the last address of X-Forwarded-For) and the scheme.
        trusted_proxy="localhost", trusted_proxy_count=1,
        trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"},
        clear_untrusted_proxy_headers=True, expose_tracebacks=False)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    _say(status, protocol.READY)
    log(f"serving {project.name} with {threads} threads")

    reported_live = None                      # a live site says "live 0 0" at once
    next_live = 0.0
    reported_job = ()
    deadline = None
    while True:
        wasyncore.loop(timeout=0.5, map=server._map, count=1)
        now = time.time()
        channels = [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)]
        with activity.lock:
            busy = activity.active or channels
            idle_for = now - activity.last
            requests = activity.requests
            activity.report()
        live_now = (live.open, live.messages) if live else None
        if live_now != reported_live and now >= next_live:
            _say(status, protocol.LIVE, *live_now)
            reported_live, next_live = live_now, now + 1
        if jobs and jobs.passes and jobs.next_job != reported_job:
            reported_job = jobs.next_job
            _say(status, protocol.NEXT_JOB, "-" if reported_job is None else round(reported_job))
        job_busy = jobs is not None and jobs.running
        done_for_jobs = for_jobs and not requests and (jobs is None or jobs.finished)
        if deadline is None and (stop.is_set() or (not busy and not job_busy and (
                done_for_jobs or (idle_timeout and idle_for >= idle_timeout)))):
            # Accept nothing more: what is queued waits for the next worker.
            server.accepting = False
            server.del_channel()
            sock.close()
            deadline = now + grace
            if jobs:
                jobs.stop()
            if live:
                live.leave()
            log("idle: leaving" if not stop.is_set() else "stopping")
        if deadline is not None and ((not busy and not (jobs and jobs.running))
                                     or now >= deadline):
            break
    with activity.lock:
        activity.report(final=True)
    server.task_dispatcher.shutdown(timeout=5)
    if live:
        live.close()
    _shutdown_lino()
    sys.stdout.flush()
    sys.stderr.flush()
    # Libraries may have started threads at import: do not wait for them.
    os._exit(0)


# -- the tests' probe ---------------------------------------------------------------------

def run_probe(app, spec):
    """Instead of serving: run the tests' probe (tests/worker_probe.py, whose source comes
    in ``spec["source"]``) on *app*, then leave. Used by the exactness tests only."""
    namespace = {"__name__": "worker_probe"}
    exec(compile(spec["source"], "tests/worker_probe.py", "exec"), namespace)
    namespace["probe"](app, spec)
    _shutdown_lino()
    os._exit(0)


_SAYING = threading.Lock()


def _say(status, word, *args):
    """One line to the keeper (from any thread)."""
    try:
        with _SAYING:
            status.write(protocol.say(word, *args))
    except OSError:           # the keeper is gone: PDEATHSIG ends us soon
        pass


def _shutdown_lino():
    try:
        from django.conf import settings
        if settings.configured and hasattr(settings, "SITE"):
            settings.SITE.shutdown()
    except Exception:
        log(f"site.shutdown() failed:\n{traceback.format_exc()}")
