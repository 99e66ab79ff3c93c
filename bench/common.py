"""Helpers of the benchmarks: a throw-away host root and a timed `linohost`."""

import math
import os
import re
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


class KeptHost(BenchHost):
    """A host root under *base* that outlives the run (made there if missing)."""

    def __init__(self, base):
        self.base = Path(base).absolute()
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        self.root = self.base / "root"

    def close(self):
        pass


def sites_of(h):
    """Names of the sites in *h*'s registry."""
    return sorted(p.stem for p in (h.root / "registry").glob("*.toml"))


BenchHost.sites = sites_of


def percentile(xs, q):
    """The *q*th percentile of *xs* (nearest rank)."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]


def _process_table():
    """{pid: (ppid, argv0)} of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            out[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]),
                                b" ".join(argv).decode(errors="replace"))
    return out


def _pss_rss(pid):
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    kb = dict(line.split(":")[0:2] for line in text.splitlines()[1:] if ":" in line)
    return int(kb["Pss"].split()[0]), int(kb["Rss"].split()[0])


def tree_memory(root_pid):
    """PSS/RSS (KiB) of *root_pid* (`linohost serve`) and all its descendants, and
    per part: serve itself, apache (httpd and its children but mod_wsgi daemons),
    keeper, site processes (the keeper's workers or the mod_wsgi daemons)."""
    procs = _process_table()
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    parts = {}
    total = [0, 0]
    todo = [(root_pid, "serve")]
    while todo:
        pid, part = todo.pop()
        pss, rss = _pss_rss(pid)
        total[0] += pss
        total[1] += rss
        n, p = parts.get(part, (0, 0))
        parts[part] = (n + 1, p + pss)
        for k in kids.get(pid, ()):
            argv = procs[k][1]
            if part == "serve":
                kpart = "keeper" if argv.rstrip().endswith(" keeper") else "apache"
            elif part == "keeper" or argv.startswith("(wsgi:"):
                kpart = "site processes"
            else:
                kpart = part
            todo.append((k, kpart))
    return {"pss_kib": total[0], "rss_kib": total[1],
            "processes": sum(n for n, _ in parts.values()), "parts": parts}


def warm_up(url, sid, connections=4, seconds=3):
    """Bounded wrk run whose numbers are not kept (a first, slow answer may leave
    wrk without a latency distribution)."""
    subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s",
                    "--timeout", "60s", "-H", f"Cookie: sessionid={sid}", url],
                   capture_output=True, timeout=seconds + 90)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def wrk_latency(url, sid, connections, duration, timeout=60):
    """{rps, p50_ms, p99_ms, requests, errors} of wrk against *url* signed in with
    *sid*: like bench_serve.wrk, but with a request timeout of *timeout* s instead
    of wrk's 2 s (a loaded machine answers slower) and with errors counted, not
    fatal. Bounded by *duration*."""
    p = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}",
                        f"-d{duration}s", "--timeout", f"{timeout}s", "--latency",
                        "-H", f"Cookie: sessionid={sid}", url],
                       capture_output=True, text=True, timeout=duration + timeout + 30)
    out = p.stdout
    if p.returncode or "Requests/sec" not in out:
        raise SystemExit(f"wrk against {url} went wrong:\n{out}{p.stderr}")

    def ms(q):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        return float(m.group(1)) * _WRK_UNITS[m.group(2)] if m else float("nan")
    errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", out)))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms(50), "p99_ms": ms(99),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}
