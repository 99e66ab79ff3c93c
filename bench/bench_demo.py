"""The first demo (issue 13): seconds from `bash scripts/demo` to its first page.

Runs the demo twice in one run, each time as on a fresh machine (a fresh copy of
the repository without .venv, so linohost is installed again; a fresh host root):
  * cold: with a fresh, empty PIP_CACHE_DIR;
  * warm: with that cache, now filled.
Also prints when each phase of the demo ended. The clock stops when the demo has printed "open http://localhost:PORT/" and the
landing page and every site's first page answer 200 here too. Debian packages
the demo installs (apt) are already installed when this runs as a test machine
is: apt's time is not in these numbers. Goal: warm <= 180 s.

Usage: python bench/bench_demo.py [--timeout 3600]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from common import BenchHost, table

REPO = Path(__file__).resolve().parents[1]
#: Lines of the demo's output that end a phase: (phase, text).
MILESTONES = (("linohost installed", "host root ready"),
              ("environment made", "installing the requirements of cosi"),
              ("cosi made", "site cosi ready"),
              ("noi made", "site noi ready"),
              ("sites made", "== starting the sites"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_repo(base):
    """A copy of the repository as a clean clone has it: no .venv, no caches."""
    dst = base / "repo"
    shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache"))
    return dst


def first_page(bench, pip_cache, timeout):
    """Seconds until the demo says "open" and every page answers; (seconds, site URLs)."""
    repo = fresh_repo(bench.base)
    port = free_port()
    log_path = bench.base / "demo.log"
    env = {**os.environ, "LINOHOST_ROOT": str(bench.root), "PIP_CACHE_DIR": str(pip_cache)}
    env.pop("VIRTUAL_ENV", None)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", "scripts/demo", str(port)], cwd=repo, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    seen = {}                      # milestone -> seconds when its line appeared
    try:
        said = f"open http://localhost:{port}/"
        while said not in log_path.read_text():
            text = log_path.read_text()
            for name, marker in MILESTONES:
                if name not in seen and marker in text:
                    seen[name] = time.perf_counter() - t0
            if proc.poll() is not None:
                raise SystemExit(f"the demo exited {proc.returncode}:\n{log_path.read_text()}")
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"no first page after {timeout} s:\n{log_path.read_text()}")
            time.sleep(0.5)
        sites = json.loads(subprocess.run(
            [repo / ".venv/bin/linohost", "list", "--json"], env=env, capture_output=True,
            text=True, check=True).stdout)
        urls = [f"http://127.0.0.1:{port}/"] + [s["url"] for s in sites]
        for url in urls:
            url = re.sub(r"^http://localhost:", "http://127.0.0.1:", url)
            r = requests.get(url, timeout=60)
            assert r.status_code == 200, (url, r.status_code)
        return time.perf_counter() - t0, [s["url"] for s in sites], seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per round at most")
    args = ap.parse_args()
    pip_cache = Path(tempfile.mkdtemp(prefix="linohost-bench-pipcache-", dir="/tmp"))
    rows, times = [], {}
    try:
        for label in ("cold", "warm"):
            bench = BenchHost("linohost-bench-demo-")
            try:
                dt, urls, seen = first_page(bench, pip_cache, args.timeout)
            finally:
                bench.close()
            times[label] = dt
            rows.append((f"scripts/demo to first page, {label} pip cache", f"{dt:.1f}",
                         " ".join(urls)))
            rows += [(f"  ... {name} at", f"{t:.1f}", "") for name, t in seen.items()]
    finally:
        shutil.rmtree(pip_cache, ignore_errors=True)
    table(rows, ("what", "seconds", "sites that answered"))
    print(f"\ncold/warm: {times['cold'] / times['warm']:.2f}    "
          f"warm <= 180 s: {'yes' if times['warm'] <= 180 else 'NO'}")


if __name__ == "__main__":
    main()
