"""Creating environments and sites (issue 2): linohost against getlino, side by side.

Measures in one run:
  * `linohost env create` with an empty pip cache (cold) and with pip's cache (warm);
  * `linohost new NAME --app cosi` (demo data, SQLite) with the environment ready;
  * getlino's `startsite cosi NAME --batch` on the same machine, run as the
    unprivileged user `nobody` (as root getlino runs `apt-get upgrade` and restarts
    services machine-wide), with its default per-site virtualenv; its first run fills
    its pip cache, the later ones are measured warm.
and prints the times and ratios. Needs root (to run getlino as nobody).

Usage: python bench/bench_lifecycle.py [--rounds 3]
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import BenchHost, median, table


def getlino_startsites(names):
    """Seconds of `getlino startsite cosi NAME` for each name (as nobody, own HOME)."""
    base = Path(tempfile.mkdtemp(prefix="getlino-bench-", dir="/tmp"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    shutil.chown(home, "nobody")
    venv = base / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "getlino"], check=True)
    env = {"HOME": str(home), "PATH": f"{venv}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def as_nobody(*args):
        t = time.perf_counter()
        p = subprocess.run(["runuser", "-u", "nobody", "--", "env",
                            *[f"{k}={v}" for k, v in env.items()], *map(str, args)],
                           capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"getlino {args[1]} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        return time.perf_counter() - t

    try:
        as_nobody(venv / "bin" / "getlino", "configure", "--batch", "--shared-env", "",
                  "--server-domain", "localhost", "--no-devtools", "--sites-base",
                  home / "lino", "--no-linod", "--web-server", "", "--db-engine", "sqlite3")
        return [as_nobody(venv / "bin" / "getlino", "startsite", "cosi", n, "--batch")
                for n in names]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: getlino is run as the user nobody")
    h = BenchHost()
    cold_cache = Path(tempfile.mkdtemp(prefix="pip-cold-"))
    try:
        h("init", "--port", "18198")
        t_cold, _ = h("env", "create", "cold", "cosi", env={"PIP_CACHE_DIR": str(cold_cache)})
        t_warm, _ = h("env", "create", "default", "cosi")
        h("new", "first", "--app", "cosi")        # the app's requirements, static files: once
        news = [h("new", f"s{i}", "--app", "cosi")[0] for i in range(a.rounds)]
        # getlino: first run warms its cache, the next ones are measured
        gl = getlino_startsites([f"g{i}" for i in range(a.rounds + 1)])
        gl_cold, gl_warm = gl[0], gl[1:]
        table([("linohost env create (empty pip cache)", f"{t_cold:.1f}"),
               ("linohost env create (pip cache)", f"{t_warm:.1f}"),
               ("linohost new cosi demo, env ready (median)", f"{median(news):.1f}"),
               ("getlino startsite cosi, first (fills its cache)", f"{gl_cold:.1f}"),
               ("getlino startsite cosi, warm (median)", f"{median(gl_warm):.1f}")],
              ("what", "seconds"))
        print(f"\nratio linohost new / getlino startsite (warm): "
              f"{median(news) / median(gl_warm):.2f} (target <= 0.125)")
        print(f"ratio linohost env create + new / getlino startsite (both warm): "
              f"{(t_warm + median(news)) / median(gl_warm):.2f}")
    finally:
        shutil.rmtree(cold_cache, ignore_errors=True)
        h.close()


if __name__ == "__main__":
    main()
