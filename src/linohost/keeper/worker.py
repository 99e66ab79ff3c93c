"""A site worker: runs *inside* the site's environment (python -c), serves one site.

The keeper starts it as the site's user with the site's listening unix socket
already bound and listening (inherited, its number in LINOHOST_LISTEN_FD) and a
pipe to report on (LINOHOST_STATUS_FD). It loads the site's own apache/wsgi.py
(the same entry point as under mod_wsgi) and serves it with waitress, in this
process, with threads. It leaves

- with exit code 0 after LINOHOST_IDLE_TIMEOUT seconds without a request
  (0: never) or on SIGTERM, after finishing every connection it has accepted
  (connections not yet accepted stay in the socket's backlog for the next worker);
- with exit code 3 if the site cannot be loaded ("failed to boot": the keeper
  backs off instead of starting it again at once).

Reports on the status pipe, one line each: ``ready``, then ``stats REQUESTS
LAST_REQUEST_EPOCH`` whenever they changed (at most once a second), and
``next_job EPOCH`` (``next_job -``: none) whenever it changed.

With LINOHOST_JOBS_SOURCE (the text of linohost's keeper/jobs.py) it also runs
the site's scheduled background tasks (see there) and does not leave on idle
while one runs; with LINOHOST_FOR_JOBS=1 (started for a job, not a request) it
leaves as soon as the jobs are done, unless a request came meanwhile.
Linohost ships this file; it imports nothing of linohost.
"""
import ctypes
import hashlib
import importlib.util
import io
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import types
from pathlib import Path

BOOT_FAILED = 3
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


def jobs_config():
    """What LINOHOST_JOBS_* say about background tasks (None: run none)."""
    source = os.environ.pop("LINOHOST_JOBS_SOURCE", "")
    for_jobs = os.environ.pop("LINOHOST_FOR_JOBS", "") == "1"
    interval = float(os.environ.pop("LINOHOST_MIN_JOB_INTERVAL", "300"))
    return {"source": source, "for_jobs": for_jobs, "min_interval": interval} if source else None


def start_jobs(jobs):
    """The site's background tasks in a thread (linohost's jobs.py, given as text)."""
    if not jobs:
        return None
    try:
        module = types.ModuleType("linohost_jobs")
        exec(compile(jobs["source"], "linohost/keeper/jobs.py", "exec"), module.__dict__)
        return module.start(log, min_interval=jobs["min_interval"])
    except Exception:          # the site still serves; its tasks wait
        log(f"cannot run background tasks:\n{traceback.format_exc()}")
        return None


class Activity:
    """Counts requests and knows when the last one ended (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.requests = 0
        self.last = time.time()
        self.last_request = None

    def wrap(self, app):
        def counted(environ, start_response):
            with self.lock:
                self.active += 1
                self.requests += 1
                self.last = self.last_request = time.time()
            try:
                return _Closing(app(environ, start_response), self.done)
            except BaseException:
                self.done()
                raise
        return counted

    def done(self):
        with self.lock:
            self.active -= 1
            self.last = time.time()


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


def main():
    """A plain start: this process loads the site and serves it."""
    die_with_keeper(int(os.environ.pop("LINOHOST_KEEPER_PID")))
    without_threads_at_import()
    project = Path(sys.argv[1]).resolve()
    # Lino takes a "-c" argv[0] for a doctest (see siteinit.py): look like a server.
    sys.argv = ["linohost-worker", str(project)]
    status = os.fdopen(int(os.environ.pop("LINOHOST_STATUS_FD")), "w", buffering=1)
    sock = socket.socket(fileno=int(os.environ.pop("LINOHOST_LISTEN_FD")))
    try:
        app = load_application(project)
    except BaseException:
        log(f"cannot load site {project.name}:\n{traceback.format_exc()}")
        os._exit(BOOT_FAILED)
    if os.environ.get("LINOHOST_PROBE"):
        probe(app, json.loads(os.environ.pop("LINOHOST_PROBE")))
    serve(project, app, sock, status,
          threads=int(os.environ.pop("LINOHOST_THREADS", "8")),
          idle_timeout=float(os.environ.pop("LINOHOST_IDLE_TIMEOUT", "0")),
          grace=float(os.environ.pop("LINOHOST_GRACE", "30")), jobs=jobs_config())


def serve(project, app, sock, status, *, threads, idle_timeout, grace, jobs=None):
    """Serve *app* on the listening *sock* until idle or told to stop (running the
    site's background tasks if *jobs*, see :func:`jobs_config`); then leave the
    process (``os._exit``) after Lino's shutdown."""
    for_jobs = bool(jobs and jobs["for_jobs"])
    jobs = start_jobs(jobs)
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress import wasyncore

    activity = Activity()
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
    status.write("ready\n")
    log(f"serving {project.name} with {threads} threads")

    reported = (0, None)
    reported_job = ()
    next_report = 0
    deadline = None
    while True:
        wasyncore.loop(timeout=0.5, map=server._map, count=1)
        now = time.time()
        channels = [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)]
        with activity.lock:
            busy = activity.active or channels
            idle_for = now - activity.last
            stats = (activity.requests, activity.last_request)
        if stats != reported and now >= next_report:
            _report(status, stats)
            reported, next_report = stats, now + 1
        if jobs and jobs.passes and jobs.next_job != reported_job:
            reported_job = jobs.next_job
            _say(status, f"next_job {'-' if reported_job is None else round(reported_job)}")
        job_busy = jobs is not None and jobs.running
        done_for_jobs = for_jobs and not stats[0] and (jobs is None or jobs.finished)
        if deadline is None and (stop.is_set() or (not busy and not job_busy and (
                done_for_jobs or (idle_timeout and idle_for >= idle_timeout)))):
            # Accept nothing more: what is queued waits for the next worker.
            server.accepting = False
            server.del_channel()
            sock.close()
            deadline = now + grace
            if jobs:
                jobs.stop()
            log("idle: leaving" if not stop.is_set() else "stopping")
        if deadline is not None and ((not busy and not (jobs and jobs.running))
                                     or now >= deadline):
            break
    if stats != reported:
        _report(status, stats)
    server.task_dispatcher.shutdown(timeout=5)
    _shutdown_lino()
    sys.stdout.flush()
    sys.stderr.flush()
    # Libraries may have started threads at import: do not wait for them.
    os._exit(0)


# -- the probe: what the tests compare between a forked and a plain worker -------------

def probe(app, spec):
    """Write this worker's view of its site into ``spec["out"]`` (JSON) and leave:
    every Django setting (secrets as hashes), the Site's and its plugins' attributes,
    (with ``spec["build_cache"]``: after building the site cache) and *app*'s answers to ``spec["requests"]`` (a list of [method, path, form]) in
    one session, as the web server would send them. Used by the exactness tests."""
    from django.conf import settings
    site = settings.SITE
    secret = ("SECRET_KEY", "PASSWORD", "EMAIL_HOST_PASSWORD")
    import logging
    import random
    streams = {}
    for name in ("", "lino", "django"):
        for h in logging.getLogger(name).handlers:
            fd = getattr(getattr(h, "stream", None), "fileno", lambda: None)()
            streams[f"{name}:{type(h).__name__}"] = os.readlink(f"/proc/self/fd/{fd}") \
                if fd is not None else None
    out = {"pid": os.getpid(), "uid": os.getuid(), "fds": _fds(),
           "threads": len(os.listdir("/proc/self/task")),
           "random": random.getrandbits(64), "log_streams": streams,
           "signals": {s.name: _plain(signal.getsignal(s)) for s in (
               signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)},
           "settings": {}, "site": {}, "plugins": {}, "answers": []}
    for k in dir(settings._wrapped):
        if k.isupper():
            v = getattr(settings, k)
            if k == "DATABASES":
                v = {a: {kk: (_hash(vv) if kk in secret else vv) for kk, vv in d.items()}
                     for a, d in v.items()}
            out["settings"][k] = _hash(v) if k in secret else _plain(v)
    for k in set(vars(site)) | {"title", "site_prefix", "languages", "default_ui"}:
        out["site"][k] = _plain(getattr(site, k))
    for p in site.installed_plugins:
        out["plugins"][p.app_label] = {k: _plain(v) for k, v in vars(p).items() if k != "site"}
    if spec.get("build_cache"):                 # the site cache (media/cache), as `new` does
        site.build_site_cache(force=True, verbosity=0)
    cookies = {}
    for method, path, form in spec["requests"]:
        out["answers"].append(_call(app, method, path, form, cookies, spec["host"]))
    out["fds_after"] = _fds()
    with open(spec["out"], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, default=str)
    _shutdown_lino()
    os._exit(0)


def _fds():
    """{fd: what it is} of this process."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass                            # the listing's own descriptor, closed by now
    return out


def _hash(value):
    return "sha256:" + hashlib.sha256(repr(value).encode()).hexdigest()


def _plain(value):
    import re
    if isinstance(value, (set, frozenset)):
        return repr(sorted(map(_plain, value)))         # no order of its own
    try:
        text = repr(value)
    except Exception as e:                  # noqa: BLE001
        text = f"<unrepresentable {type(value).__name__}: {e}>"
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _call(app, method, path, form, cookies, host):
    """One request to the WSGI *app* as waitress would make it; its answer."""
    from urllib.parse import urlencode
    path, _, query = path.partition("?")
    body = urlencode(form or {}).encode()
    headers = {}
    if method == "POST":                    # as a browser: the CSRF token, and from where
        headers = {"HTTP_X_CSRFTOKEN": cookies.get("csrftoken", ""),
                   "HTTP_REFERER": f"http://{host}{path}"}
    environ = {
        **headers,
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SCRIPT_NAME": "", "SERVER_NAME": host, "SERVER_PORT": "80", "HTTP_HOST": host,
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
        "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = sorted([k.lower(), v] for k, v in headers)

    result = app(environ, start_response)
    try:
        answer["body"] = b"".join(result).decode("utf-8", "replace")
    finally:
        if hasattr(result, "close"):
            result.close()
    for k, v in answer["headers"]:
        if k == "set-cookie":
            name, _, rest = v.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
    answer["request"] = [method, path + ("?" + query if query else "")]
    return answer


def _report(status, stats):
    _say(status, f"stats {stats[0]} {stats[1] or 0}")


def _say(status, line):
    try:
        status.write(line + "\n")
    except OSError:           # the keeper is gone: PDEATHSIG ends us soon
        pass


def _shutdown_lino():
    try:
        from django.conf import settings
        if settings.configured and hasattr(settings, "SITE"):
            settings.SITE.shutdown()
    except Exception:
        log(f"site.shutdown() failed:\n{traceback.format_exc()}")


if __name__ == "__main__":
    main()
