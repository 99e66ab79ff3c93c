"""Shared fixtures: one real host root with one real Lino environment per run.

Building the environment (pip install of Lino, Cosi, Noi, both front ends)
is the slow part, so it happens once per test session; tests create their
own sites in it with unique names and remove them.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest
import tomli_w

LINOHOST = [sys.executable, "-m", "linohost"]
_counter = itertools.count()
#: Unique per process and per pytest-xdist worker (gw0, gw1 ...: its last digit):
#: site names become Unix user names, which two workers share.
_TAG = (os.getpid() % 100) * 10 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]) % 10


# -- two at once (pytest-xdist: `pytest -n 2 --dist loadgroup`) ---------------------

#: Modules that change a thing of the machine, not of a host root, that another
#: of them reads: they run on one worker, one after the other.
MACHINE_GROUPS = {"test_system_apache.py": "etc-apache",   # /etc/apache2, and a copy of it
                  "test_tls.py": "etc-apache"}

#: The groups that take longest, first: a worker that is free takes the next group,
#: so the long ones must not come last.
LONGEST_FIRST = ("serving-keeper", "test_upgrade.py", "test_zygote.py", "test_backup.py",
                 "serving-mod_wsgi", "test_messages.py", "test_lifecycle.py", "test_users.py",
                 "test_secrets.py", "test_bad_input.py")


def _group(item):
    if "server" in item.fixturenames:
        return f"serving-{item.callspec.params['server']}"
    return MACHINE_GROUPS.get(item.path.name, item.path.name)


def pytest_itemcollected(item):
    """Every test goes with its group to one worker: the tests that use the session's
    server under one process backend (a worker starts the server it needs), else
    its module's (module fixtures are made once), or a machine group."""
    item.add_marker(pytest.mark.xdist_group(_group(item)))


def pytest_configure(config):
    """xdist hands out the groups in the order of the tests (not by their number of
    tests: one test can take longer than a module of them)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The longest groups first (stable: pytest's order within a group)."""
    def rank(item):
        g = _group(item)
        return LONGEST_FIRST.index(g) if g in LONGEST_FIRST else len(LONGEST_FIRST)
    items[:] = sorted(items, key=rank)


def pytest_collection_finish(session):
    """Refuse to run two at once ungrouped: xdist marks a group in the test ids
    (pytest-xdist#1386: not under pytest 9.2)."""
    if getattr(session.config.option, "loadgroup", False):     # set in each worker
        ungrouped = [i.nodeid for i in session.items if "@" not in i.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and "
                                    f"{len(ungrouped) - 1} more): see pytest-xdist#1386")


def linohost(root, *args, check=True, env=None, input=None, timeout=900):
    """Run the real `linohost` command; return the CompletedProcess."""
    full_env = {**os.environ, "LINOHOST_ROOT": str(root), **(env or {})}
    full_env.pop("LINOHOST_TRACEBACK", None)
    p = subprocess.run([*LINOHOST, *map(str, args)], capture_output=True, text=True,
                       env=full_env, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"linohost {' '.join(map(str, args))} -> {p.returncode}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@contextmanager
def host_config(host, **changes):
    """Change keys of the host's linohost.toml (dotted: "apache.x") for a while."""
    path = host.root / "linohost.toml"
    before = path.read_bytes()
    data = tomllib.loads(before.decode())
    for dotted, value in changes.items():
        *tables, leaf = dotted.split(".")
        node = data
        for t in tables:
            node = node.setdefault(t, {})
        node[leaf] = value
    path.write_text(tomli_w.dumps(data))
    try:
        yield
    finally:
        path.write_bytes(before)


class HostRoot:
    """A host root under test and a `linohost` runner bound to it."""

    def __init__(self, root):
        self.root = Path(root)

    def __call__(self, *args, **kw):
        return linohost(self.root, *args, **kw)

    def unique(self, prefix):
        return f"{prefix}{_TAG}x{next(_counter)}"

    def db_name(self, site):
        """The database and user name `new` gives *site* here (the host's db_prefix)."""
        from linohost.model.host import Host
        return Host.open(self.root).db_prefix + site


def make_root(prefix):
    # Not under pytest's tmp_path: that is mode 700 and the site user must read it.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("LINOHOST_TEST_DIR", "/tmp")))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def host():
    """An initialised host root with environment `default` (lino, cosi, noi, react, extjs)."""
    root = make_root("linohost-test-")
    h = HostRoot(root / "root")
    h("init", "--port", "18080")
    _no_background_tasks(h)
    h("env", "create", "default", "cosi", "noi", timeout=1800)
    yield h
    for name in h("list", "--json", check=False).stdout and _names(h):
        h("rm", name, "--yes", "--no-archive", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _no_background_tasks(h):
    """The keeper runs no Lino background tasks in the session's sites (tests/test_jobs.py
    turns them on for a while): tasks change a site's data by themselves, which tests that
    compare a site's rows before and after (backup, restore, clone) must not see."""
    path = h.root / "linohost.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault("keeper", {})["jobs"] = False
    path.write_text(tomli_w.dumps(data))


def _names(h):
    import json
    return [s["name"] for s in json.loads(h("list", "--json").stdout)]


@pytest.fixture(scope="session")
def cosi_sites(host):
    """Three Cosi demo sites (ExtJS), one on each database engine: {engine: name}."""
    sites = {}
    for engine in ("sqlite", "postgresql", "mysql"):
        name = host.unique(f"cosi_{engine[:2]}")
        host("new", name, "--app", "cosi", "--db", engine, "--title", f"Cosi on {engine}",
             "--front-end", "extjs")
        sites[engine] = name
    return sites


# -- serving -------------------------------------------------------------------

def free_port():
    import socket
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
    import time
    import requests
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
    import signal
    server.proc.send_signal(sig or signal.SIGTERM)
    return server.proc.wait(60)


@pytest.fixture(scope="session")
def domain_sites(host):
    """Two Cosi demo sites on their own host names (React): {name: host name}."""
    sites = {}
    for letter in "ab":
        name = host.unique(f"dom{letter}")     # no "_": it becomes a host name
        domain = f"{name}.example.test"
        host("new", name, "--app", "cosi", "--domain", domain, "--title", f"Domain {letter}")
        sites[name] = domain
    return sites


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


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, host, cosi_sites, domain_sites):
    """`linohost serve` with three prefix sites and two domain sites, under each
    process backend in turn (``server.backend``)."""
    resolve_localhost_names()
    use_backend(host, request.param)
    s = start_serve(host, free_port())
    s.backend = request.param
    yield s
    if s.proc.poll() is None:
        stop_serve(s)


@pytest.fixture
def kserver(server):
    """The session's server, only under the keeper (the test skips under mod_wsgi)."""
    if server.backend != "keeper":
        pytest.skip("what only the keeper does")
    return server


def status(host):
    """{site: its row of `linohost status --json`}."""
    return {r["name"]: r for r in json.loads(host("status", "--json").stdout)}


def wait_for(what, condition, timeout=120, every=0.2):
    """The first true value of *condition()*, asked every *every* s (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def wait_zygotes_ready(host, timeout=600):
    """Until none of the keeper's zygotes is starting (`status --zygotes`) and one is
    ready; their rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = json.loads(host("status", "--zygotes", "--json").stdout)
        if any(r["state"] == "ready" for r in rows) and \
                not any(r["state"] in ("starting", "stopped") for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(1)


def site_pids(h):
    """{site: pid} of the sites' running processes, from `linohost status`."""
    return {r["name"]: r["pid"] for r in json.loads(h("status", "--json").stdout) if r["pid"]}


def kill_at(h, marker, *args):
    """Run `linohost ARGS` and SIGKILL it as soon as its progress says *marker*.

    Returns whether it got that far (it was killed there)."""
    import signal
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    proc = subprocess.Popen([*LINOHOST, *map(str, args)], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    hit = False
    try:
        for line in proc.stderr:
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                hit = True
                break
    finally:
        proc.kill()
        proc.wait()
    return hit


#: Every table's rows, as a digest per model, computed inside the site.
FINGERPRINT = """
import hashlib, json
from django.apps import apps
out = {}
for m in apps.get_models():
    if m._meta.proxy or not m._meta.managed:
        continue
    rows = sorted(repr(r) for r in m.objects.order_by().values_list())
    out[m._meta.label] = [len(rows), hashlib.sha256("\\n".join(rows).encode()).hexdigest()]
print("FINGERPRINT", json.dumps(out, sort_keys=True))
"""


def fingerprint(host, site, ids=True):
    out = host("manage", site, "--", "shell", "-c", FINGERPRINT).stdout
    data = json.loads(out.split("FINGERPRINT ", 1)[1].splitlines()[0])
    # Tables Django fills by itself at startup, not the site's data.
    for volatile in ("sessions.Session", "contenttypes.ContentType", "auth.Permission"):
        data.pop(volatile, None)
    return data if ids else {k: v[0] for k, v in data.items()}


@pytest.fixture
def bare():
    """A host root of its own without environments or sites (init only)."""
    root = make_root("linohost-bare-")
    h = HostRoot(root / "root")
    h("init")
    yield h
    shutil.rmtree(root, ignore_errors=True)
