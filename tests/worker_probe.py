"""What the exactness tests compare between a forked and a plain worker of a site
(tests/test_zygote.py, through zygote_probe.py): the worker runs this source instead of
serving (keeper/worker.py's ``run_probe``), in the site's own environment, so it
imports nothing of linohost nor of the tests."""
import hashlib
import io
import json
import os
import signal
import sys


def probe(app, spec):
    """Write this worker's view of its site into ``spec["out"]`` (JSON): every Django
    setting (secrets as hashes), the Site's and its plugins' attributes, and (with
    ``spec["build_cache"]``: after building the site cache) *app*'s answers to
    ``spec["requests"]`` (a list of [method, path, form]) in one session, as the web
    server would send them."""
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
