"""Shared fixtures: one real host root with one real Lino environment per run.

Building the environment (pip install of Lino, Cosi, Noi, both front ends)
is the slow part, so it happens once per test session; tests create their
own sites in it with unique names and remove them.
"""

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

LINOHOST = [sys.executable, "-m", "linohost"]
_counter = itertools.count()


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


class HostRoot:
    """A host root under test and a `linohost` runner bound to it."""

    def __init__(self, root):
        self.root = Path(root)

    def __call__(self, *args, **kw):
        return linohost(self.root, *args, **kw)

    def unique(self, prefix):
        return f"{prefix}{os.getpid() % 1000}x{next(_counter)}"


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
    h("env", "create", "default", "cosi", "noi", timeout=1800)
    yield h
    for name in h("list", "--json", check=False).stdout and _names(h):
        h("rm", name, "--yes", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _names(h):
    import json
    return [s["name"] for s in json.loads(h("list", "--json").stdout)]


@pytest.fixture(scope="session")
def cosi_sites(host):
    """Three Cosi demo sites, one on each database engine: {engine: name}."""
    sites = {}
    for engine in ("sqlite", "postgresql", "mysql"):
        name = host.unique(f"cosi_{engine[:2]}")
        host("new", name, "--app", "cosi", "--db", engine, "--title", f"Cosi on {engine}")
        sites[engine] = name
    return sites
