"""What the request metrics cost in the hot path (issue 21): the keeper's worker as it
runs, against the same worker with its counting taken out.

Every request a worker serves passes through ``Activity.wrap`` (keeper/worker.py): a
lock, the request and answer counters, the latency histogram and the wrapper that
sees the response closed, reported to the keeper at most once a second (the status
rows, `linohost status` and `/_linohost/metrics` are read from those reports). Both
servers here are linohost's worker exactly as the keeper starts it (as the site user,
on an inherited socket, waitress with the keeper's threads); in the second one a
shipped module replaces ``Activity.wrap`` by the application itself before the
worker's main() runs. One Cosi demo site, a Lino JSON API call signed in
(``GET /SITE/api/contacts/Persons?fmt=json&limit=10``), wrk at 8 and 1 connections,
rounds alternating the order; the ratio counted / uncounted of the medians (goal at 8
connections: >= 0.98). Needs wrk; every load is bounded by wrk's -d. First, the
wrapper alone in this process: microseconds it adds to a request of an application
that does nothing (a bound of its cost that no machine noise blurs).

Usage: python bench/bench_metrics.py [--root DIR --site NAME] [--duration 8] [--rounds 5]
"""

import argparse
import importlib
import os
import sys
import time

from bench_serve import API, _host_key, stop
from bench_worker_server import loads, one_site_host, start_waitress
from common import median, table

#: A shipped module: linohost's worker with no per-request counting.
UNCOUNTED = '''
import linohost_worker as worker


class Uncounted(worker.Activity):
    def wrap(self, app):
        return app


def main():
    worker.Activity = Uncounted
    worker.main()
'''

SERVERS = {
    "counted": lambda h, site, port, threads: start_waitress(h, site, port, threads),
    "uncounted": lambda h, site, port, threads: start_waitress(
        h, site, port, threads, module="uncounted", sources={"uncounted": UNCOUNTED}),
}


def wrapper_us(n=200_000):
    """Microseconds ``Activity.wrap`` adds to a request of an application that does
    nothing, measured here (the shipped worker imported under its own names)."""
    for name in ("protocol", "unheard"):
        sys.modules[f"linohost_{name}"] = importlib.import_module(f"linohost.keeper.{name}")
    from linohost.keeper import worker
    body = [b"x"]

    def app(environ, start_response):
        start_response("200 OK", [])
        return body

    def per_request(application):
        t = time.perf_counter()
        for _ in range(n):
            it = application({}, lambda status, headers, exc_info=None: None)
            for _ in it:
                pass
            if hasattr(it, "close"):
                it.close()
        return (time.perf_counter() - t) / n * 1e6

    with open(os.devnull, "w") as status:
        counted = worker.Activity(status).wrap(app)
        plain = min(per_request(app) for _ in range(3))
        return min(per_request(counted) for _ in range(3)) - plain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", help="base directory of a host root to reuse (and keep)")
    ap.add_argument("--site", help="its site to serve (with --root)")
    ap.add_argument("--duration", type=int, default=8, help="seconds of each wrk run")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    extra = wrapper_us()
    print(f"== the wrapper alone: {extra:.2f} us per request\n", flush=True)
    h, site = one_site_host(a.root, a.site, "linohost-bench-metrics-", "msite1")
    procs = {}
    try:
        threads = int(_host_key(h, "keeper.threads"))
        order = list(SERVERS)
        print(f"site {site} of {h.root}; 1 process x {threads} threads each; "
              f"{os.cpu_count()} cores; load average {os.getloadavg()}\n")
        res = loads(h, site, SERVERS, threads, procs, a.rounds, a.duration)
        print(f"== {API} signed in, {a.rounds} rounds of {a.duration} s, order alternating")
        table([(s, c, " / ".join(f"{r['rps']:.1f}" for r in res[s, c]),
                f"{median([r['rps'] for r in res[s, c]]):.1f}",
                f"{median([r['p50_ms'] for r in res[s, c]]):.0f}",
                sum(r["errors"] for r in res[s, c]))
               for c in (8, 1) for s in order],
              ("worker", "connections", "req/s per round", "req/s median", "p50 ms median",
               "errors"))
        for c in (8, 1):
            rps = [median([r["rps"] for r in res[s, c]]) for s in order]
            took = 1e6 / rps[1]                 # us per request, uncounted
            print(f"c={c}: counted / uncounted req/s {rps[0] / rps[1]:.3f}"
                  + (" (goal >= 0.98)" if c == 8 else "")
                  + f"; the wrapper's {extra:.1f} us of the {took:.0f} us a request "
                    f"takes bound it at {took / (took + extra):.4f}")
        print(f"load average after {os.getloadavg()}")
    finally:
        for p in procs.values():
            stop(p)
        h.close()


if __name__ == "__main__":
    sys.exit(main())
