"""Shared fixtures: one real host root with one real Lino environment per run.

Building the environment (pip install of Lino, Cosi, Noi, both front ends)
is the slow part, so it happens once per test session; tests create their
own sites in it with unique names and remove them. The `linohost` runner is in
runner.py, `serve` in serving.py, reading a host's state in hoststate.py, and the
scheduling of tests on two workers in scheduling.py (its hooks are imported here).
"""

import shutil
import signal
import tomllib
from pathlib import Path

import pytest
import tomli_w

from runner import HostRoot, make_root, share_envs
from scheduling import (pytest_collection_finish, pytest_collection_modifyitems,  # noqa: F401
                        pytest_configure, pytest_itemcollected)
from serving import (BACKENDS, free_port, resolve_localhost_names, start_serve, stop_serve,
                     use_backend)


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_as_at_a_terminal():
    """The processes tests start get SIGINT's default disposition, as at a terminal: a
    run started in the background (`bash .ci/run &`) inherits SIGINT ignored, and the
    Ctrl-C tests' signals would then be lost. (Unlike SIG_IGN, a handler is not
    inherited across exec.)"""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


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


@pytest.fixture(scope="session")
def nserver(host):
    """`linohost serve` under web_server nginx, in a host root of its own (keeper): two
    prefix sites (React, ExtJS) and one domain site (``nserver.prefix``, ``.domain``)."""
    if not Path("/usr/sbin/nginx").exists():
        pytest.skip("Debian's nginx is not installed")
    resolve_localhost_names()
    root = make_root("linohost-nginx-")
    h = HostRoot(root / "root")
    h("init", "--port", "18090", "--web-server", "nginx")
    _no_background_tasks(h)
    share_envs(h, host)                         # default: cosi, noi (test_live)
    prefix = {}
    for front_end in ("react", "extjs"):
        name = h.unique(f"ng{front_end[0]}")
        h("new", name, "--app", "cosi", "--front-end", front_end, "--title", f"nginx {front_end}")
        prefix[name] = front_end
    domain = h.unique("ngd")
    h("new", domain, "--app", "cosi", "--domain", f"{domain}.example.test",
      "--title", "nginx domain")
    s = start_serve(h, free_port())
    s.prefix, s.domain = prefix, domain
    yield s
    if s.proc.poll() is None:
        stop_serve(s)
    for name in _names(h):
        h("rm", name, "--yes", "--no-archive", check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def kserver(server):
    """The session's server, only under the keeper (the test skips under mod_wsgi)."""
    if server.backend != "keeper":
        pytest.skip("what only the keeper does")
    return server


@pytest.fixture
def bare():
    """A host root of its own without environments or sites (init only)."""
    root = make_root("linohost-bare-")
    h = HostRoot(root / "root")
    h("init")
    yield h
    shutil.rmtree(root, ignore_errors=True)
