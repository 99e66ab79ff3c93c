"""Helpers of the benchmarks: a throw-away host root and a timed `linohost`."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINOHOST = [sys.executable, "-m", "linohost"]


class BenchHost:
    """A host root under /tmp (readable by the site user), removed by close()."""

    def __init__(self, prefix="linohost-bench-"):
        self.base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.base.chmod(0o755)
        self.root = self.base / "root"

    def __call__(self, *args, env=None, check=True):
        """Run linohost; return (seconds, CompletedProcess)."""
        full = {**os.environ, "LINOHOST_ROOT": str(self.root), **(env or {})}
        t = time.perf_counter()
        p = subprocess.run([*LINOHOST, *map(str, args)], env=full, capture_output=True,
                           text=True)
        dt = time.perf_counter() - t
        if check and p.returncode:
            raise SystemExit(f"linohost {' '.join(map(str, args))} failed:\n{p.stderr}")
        return dt, p

    def close(self):
        names = []
        if (self.root / "registry").is_dir():
            names = [p.stem for p in (self.root / "registry").glob("*.toml")]
        for n in names:                       # drops their databases and users
            self("rm", n, "--yes", "--no-archive", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def median(xs):
    return statistics.median(xs)


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    print(line(headers))
    for r in rows:
        print(line(r))
