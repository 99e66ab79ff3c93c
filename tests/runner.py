"""The real `linohost` command, run against a host root under test."""

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import tomllib
from contextlib import contextmanager
from pathlib import Path

import tomli_w

LINOHOST = [sys.executable, "-m", "linohost"]


_counter = itertools.count()


#: Unique per process and per pytest-xdist worker (gw0, gw1 ...: its last digit):
#: site names become Unix user names, which two workers share.
_TAG = (os.getpid() % 100) * 10 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]) % 10


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


def share_envs(h, host):
    """Host root *h* uses the environments of the session's *host*: one Lino environment
    per worker (building one takes minutes). Call it after `init`."""
    envs = h.root / "envs"
    envs.rmdir()                                # init made it empty
    envs.symlink_to(host.root / "envs")


def make_root(prefix):
    # Not under pytest's tmp_path: that is mode 700 and the site user must read it.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("LINOHOST_TEST_DIR", "/tmp")))
    root.chmod(0o755)
    return root


def kill_at(h, marker, *args, env=None):
    """Run `linohost ARGS` (with *env* added to the environment) and SIGKILL it as soon
    as its progress says *marker*.

    Returns whether it got that far (it was killed there)."""
    env = {**os.environ, **(env or {}), "LINOHOST_ROOT": str(h.root)}
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
