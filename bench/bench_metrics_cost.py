"""What the worker's own accounting costs in the hot path (issue 21): the keeper's
worker as shipped (every request counted: its answer's class, its latency bucket,
the ``stats``/``done`` lines to the keeper) against the same worker with that
accounting taken out of its source (the application served bare), one site, side by
side in one run, the order alternating each round:

  * a Lino JSON API call signed in and Lino's 404 page (a cheap Django answer, where
    the accounting weighs most), wrk at 8 and at 1 connections: requests/s, p50;
  * the ratio counted / bare (goal >= 0.98).
Needs wrk. Every load is bounded by wrk's -d.

Usage: python bench/bench_metrics_cost.py [--root DIR --site NAME] [--duration 8] [--rounds 3]
"""

import argparse
import os
import shutil
import sys
import time

from linohost.keeper import shipped

from bench_serve import API, ENV, _host_key, free_port, login, stop, wait_200
from bench_worker_server import start_waitress
from common import BenchHost, KeptHost, median, table, warm_up, wrk_latency

COUNTED = "activity.wrap(app), sockets=[sock]"


def bare_sources():
    """The worker's source with the application served without Activity.wrap."""
    source = shipped.SOURCES["worker"]
    if source.count(COUNTED) != 1:
        raise SystemExit(f"worker.py changed: {COUNTED!r} not found once")
    return {"LINOHOST_SOURCE_worker": source.replace(COUNTED, "app, sockets=[sock]")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", help="base directory of a host root to reuse (and keep)")
    ap.add_argument("--site", help="its site to serve (with --root)")
    ap.add_argument("--duration", type=int, default=8, help="seconds of each wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    if bool(a.root) != bool(a.site):
        raise SystemExit("--root and --site go together")
    h = KeptHost(a.root) if a.root else BenchHost("linohost-bench-metrics-")
    site = a.site or "msite1"
    procs = {}
    try:
        if not a.root:
            h("init")
            h("env", "create", ENV, "cosi")
            h("new", site, "--app", "cosi", "--env", ENV)
        threads = int(_host_key(h, "keeper.threads"))
        variants = {"counted": None, "bare": bare_sources()}
        order = list(variants)
        ports = {}
        for v, sources in variants.items():
            ports[v] = free_port()
            procs[v] = start_waitress(h, site, ports[v], threads, sources=sources)
        bases = {v: f"http://127.0.0.1:{ports[v]}/{site}/" for v in order}
        for v in order:
            wait_200(bases[v], time.monotonic() + 300)
        sid = login(bases[order[0]])                # one database: valid on both
        paths = {"API": API, "404": "no/such/page/"}
        for v in order:
            wait_200(bases[v] + API, time.monotonic() + 60, cookies={"sessionid": sid})
            for path in paths.values():
                warm_up(bases[v] + path, sid)
        print(f"site {site} of {h.root}; 1 worker x {threads} threads each; load average "
              f"{os.getloadavg()}\n")
        res = {(v, p, c): [] for v in order for p in paths for c in (8, 1)}
        for i in range(a.rounds):
            for v in (order if i % 2 == 0 else order[::-1]):
                for p, path in paths.items():
                    for c in (8, 1):
                        res[v, p, c].append(wrk_latency(bases[v] + path, sid, c, a.duration))
        rows = []
        for p in paths:
            for c in (8, 1):
                rps = {v: median([r["rps"] for r in res[v, p, c]]) for v in order}
                p50 = {v: median([r["p50_ms"] for r in res[v, p, c]]) for v in order}
                errors = (sum(r["errors"] for v in order for r in res[v, p, c])
                          if p == "API" else "all (404)")
                rows.append((p, c, f"{rps['counted']:.1f}", f"{rps['bare']:.1f}",
                             f"{rps['counted'] / rps['bare']:.3f}", f"{p50['counted']:.1f}",
                             f"{p50['bare']:.1f}", errors))
        print(f"== {a.rounds} rounds of {a.duration} s, order alternating; medians")
        table(rows, ("request", "connections", "req/s counted", "req/s bare",
                     "ratio counted/bare", "p50 ms counted", "p50 ms bare", "errors"))
        print(f"load average after {os.getloadavg()}")
    finally:
        for proc in procs.values():
            stop(proc)
        h.close()


if __name__ == "__main__":
    sys.exit(main())
