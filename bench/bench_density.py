"""Density (issue 10): N sites under mod_wsgi and under the keeper, side by side.

One throw-away host root with N Cosi demo sites on SQLite (default 200; `--root`
reuses and keeps a host root made by an earlier run), served by `linohost serve`
first under one process backend, then under the other (`linohost init
--process-backend`), and measured alike (127.0.0.1 only; every load bounded):

  * memory: PSS (/proc/PID/smaps_rollup) of everything `linohost serve` runs (its
    process tree: itself, Apache and its children, the keeper and its workers or the
    mod_wsgi daemons) with all N sites sleeping, then while 10 of them are under load;
  * cold start: the first request to a sleeping site (keeper: no worker; mod_wsgi: a
    daemon that has not served yet) until its 200, over `--cold` sites one after
    another (the first requests of the sites to be loaded, then more): p50 and p95;
  * warm requests: a Lino JSON API call (signed in) through the front (Apache and the
    site's worker or daemon) against gunicorn serving the same site directly (1
    worker, the backend's number of threads), wrk at 1 and 8 connections in
    alternating rounds (request timeout 60 s);
  * `linohost new` while 10 sites are under load: failed requests, the other sites'
    workers that got a new pid (`linohost status --json` before and after), p99
    latency of the requests started during the change against before it.
The site added by `new` is removed again after each backend, so both serve N sites.
Prints one table per measure, both backends side by side, with the ratios.

Usage: python bench/bench_density.py [--sites 200] [--root DIR] [--cold 20]
       [--loaded 10] [--duration 5] [--rounds 2] [--backends keeper,mod_wsgi]
       [--new-wait 300]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import requests

from bench_serve import (API, ENV, _host_key, free_port, login, start_gunicorn, start_serve,
                         stop, wait_200)
from common import (BenchHost, KeptHost, median, percentile, table, tree_memory, warm_up,
                    wrk_latency)

BACKENDS = ("keeper", "mod_wsgi")


# -- host --------------------------------------------------------------------------

def make_sites(h, names, log):
    """The environment (with gunicorn) and the sites that are not there yet."""
    if not (h.root / "linohost.toml").exists():
        h("init", "--port", free_port())
    if not (h.root / "envs" / ENV).is_dir():
        h("env", "create", ENV, "cosi")
    gunicorn = h.root / "envs" / ENV / "bin" / "gunicorn"
    if not gunicorn.exists():
        subprocess.run([h.root / "envs" / ENV / "bin" / "pip", "install", "-q",
                        "--disable-pip-version-check", "gunicorn"], check=True)
    have = set(h.sites())
    for i, n in enumerate(names, 1):
        if n not in have:
            dt, _ = h("new", n, "--app", "cosi", "--env", ENV)
            print(f"{n} made in {dt:.1f} s ({i}/{len(names)}), load {os.getloadavg()[0]:.1f}",
                  file=log, flush=True)


def status_pids(h):
    """{site: pid or None} from `linohost status --json`."""
    _, p = h("status", "--json")
    return {r["name"]: r["pid"] for r in json.loads(p.stdout)}


# -- load --------------------------------------------------------------------------

def hammer(targets, until, out):
    """One thread per (url, sessionid) doing GETs one after another until the event
    *until* is set; appends (start time, seconds, ok) to *out*."""
    def run(url, sid):
        s = requests.Session()
        s.cookies.set("sessionid", sid)
        while not until.is_set():
            t = time.monotonic()
            try:
                ok = s.get(url, timeout=120).status_code == 200
            except requests.RequestException:
                ok = False
            out.append((t, time.monotonic() - t, ok))
    threads = [threading.Thread(target=run, args=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def stop_hammer(threads, until):
    until.set()
    for t in threads:
        t.join(130)


# -- one backend ---------------------------------------------------------------------

class Phase:
    """Everything measured under one process backend."""

    def __init__(self, h, backend, names, a, serve_log):
        self.h, self.backend, self.names, self.a = h, backend, names, a
        self.serve_log = serve_log
        self.new_site = f"dnew{backend.replace('_', '')}"
        self.port = int(_host_key(h, "apache.port"))
        self.base = f"http://127.0.0.1:{self.port}"
        self.res = {}

    def url(self, site, path=""):
        return f"{self.base}/{site}/{path}"

    def run(self):
        h, a = self.h, self.a
        h("init", "--process-backend", self.backend)
        t0 = time.monotonic()
        self.proc = start_serve(h, self.port, self.serve_log)
        try:
            wait_200(self.base + "/", t0 + 1800)
            self.res["serve to landing page s"] = time.monotonic() - t0
            self.settle()
            self.res["sleeping"] = tree_memory(self.proc.pid)
            # The first request of each site to be loaded is a cold start too.
            loaded = self.names[:a.loaded]
            self.res["cold"] = [self.cold_start(s) for s in loaded]
            self.sids = {s: login(self.url(s)) for s in loaded}
            self.res["loaded"] = self.memory_under_load(loaded)
            more = self.names[a.loaded:a.loaded + max(0, a.cold - a.loaded)]
            self.res["cold"] += [self.cold_start(s) for s in more]
            self.res["warm"] = self.warm(loaded[0])
            self.res["new"] = self.new_under_load(loaded)
        finally:
            stop(self.proc, 120)
        h("rm", self.new_site, "--yes", "--no-archive", check=False)
        return self.res

    def settle(self):
        """Wait until the process tree stops growing (mod_wsgi starts N daemons)."""
        last, stable = -1, 0
        deadline = time.monotonic() + 300
        while stable < 3 and time.monotonic() < deadline:
            n = tree_memory(self.proc.pid)["processes"]
            stable = stable + 1 if n == last else 0
            last = n
            time.sleep(1)

    def memory_under_load(self, sites):
        """PSS of the tree while *sites* are under load (highest of a few samples)."""
        until, done = threading.Event(), []
        threads = hammer([(self.url(s, API), self.sids[s]) for s in sites], until, done)
        best = None
        try:
            end = time.monotonic() + self.a.duration
            while time.monotonic() < end:
                time.sleep(1)
                m = tree_memory(self.proc.pid)
                if best is None or m["pss_kib"] > best["pss_kib"]:
                    best = m
        finally:
            stop_hammer(threads, until)
        best["requests"] = len(done)
        best["failed"] = sum(not ok for _, _, ok in done)
        return best

    def cold_start(self, site):
        t = time.monotonic()
        r = requests.get(self.url(site), timeout=300)
        if r.status_code != 200:
            raise SystemExit(f"{site}: first request answered {r.status_code}")
        return time.monotonic() - t

    def threads(self):
        return int(_host_key(self.h, "keeper.threads" if self.backend == "keeper"
                             else "apache.threads"))

    def warm(self, site):
        """wrk rounds through the front and against gunicorn, order alternating."""
        gport = free_port()
        g = start_gunicorn(self.h, site, gport, self.threads(), tag=f"gunicorn-{self.backend}")
        servers = [("front", self.url(site)), ("gunicorn", f"http://127.0.0.1:{gport}/{site}/")]
        sid = self.sids[site]
        try:
            for _, base in servers:
                wait_200(base + API, time.monotonic() + 300, cookies={"sessionid": sid})
                warm_up(base + API, sid)
            res = {f"{srv} {c}": [] for srv, _ in servers for c in (1, 8)}
            for i in range(self.a.rounds):
                for srv, base in (servers if i % 2 == 0 else servers[::-1]):
                    for c in (8, 1):
                        res[f"{srv} {c}"].append(
                            wrk_latency(base + API, sid, c, self.a.duration))
            return res
        finally:
            stop(g)

    def new_under_load(self, sites):
        """`linohost new` while *sites* are under load."""
        before_pids = status_pids(self.h)
        until, done = threading.Event(), []
        threads = hammer([(self.url(s, API), self.sids[s]) for s in sites], until, done)
        try:
            time.sleep(self.a.duration)
            t_new = time.monotonic()
            dt, _ = self.h("new", self.new_site, "--app", "cosi", "--env", ENV)
            t_done = time.monotonic()
            try:
                first_200 = wait_200(self.url(self.new_site), t_done + self.a.new_wait)
            except SystemExit:                   # starved on a loaded machine: say so
                first_200 = float("nan")
            # The change is over when Apache has reloaded and every loaded site answers
            # again: keep the load a few seconds longer to see what follows it.
            time.sleep(self.a.duration)
        finally:
            stop_hammer(threads, until)
        after_pids = status_pids(self.h)
        ran = {s: p for s, p in before_pids.items() if p}
        changed = sorted(s for s, p in ran.items() if after_pids.get(s) != p)
        before = [d for t, d, ok in done if t < t_new]
        during = [(t, d, ok) for t, d, ok in done if t >= t_new]
        return {
            "new s": dt, "new site first 200 s": first_200,
            "requests": len(done), "failed": sum(not ok for _, _, ok in done),
            "failed during": sum(not ok for _, _, ok in during),
            "with a process before": len(ran), "restarted": changed,
            "loaded restarted": [s for s in changed if s in sites],
            "p99 before ms": percentile(before, 99) * 1000,
            "p99 during ms": percentile([d for _, d, _ in during], 99) * 1000,
            "max during ms": max(d for _, d, _ in during) * 1000,
            "window during s": time.monotonic() - t_new,
        }


# -- report --------------------------------------------------------------------------

def mib(kib):
    return kib / 1024


def report(res, a, n):
    for section in (_report_memory, _report_cold, _report_warm, _report_new):
        try:
            section(res, a, n)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            print(f"\n({section.__name__[8:]}: not measured on every backend: {e!r})")


def _sides(res):
    k, m = res.get("keeper"), res.get("mod_wsgi")
    order = [b for b in BACKENDS if b in res]

    def side(f, fmt="{:.1f}"):
        return [fmt.format(f(res[b])) if res.get(b) is not None else "-" for b in order]

    def ratio(f):
        if k and m:
            return f"{f(k) / f(m):.2f}"
        return "-"

    return order, side, ratio, ("measure", *order, "keeper / mod_wsgi")


def _report_memory(res, a, n):
    order, side, ratio, hdr = _sides(res)
    print(f"\n== memory: PSS of everything `linohost serve` runs ({n} sites), MiB")
    rows = []
    for key, what in (("sleeping", f"all {n} sleeping"),
                      ("loaded", f"{a.loaded} under load, {n - a.loaded} sleeping")):
        f = lambda r, key=key: mib(r[key]["pss_kib"])          # noqa: E731
        rows.append((f"{what}: total", *side(f), ratio(f)))
        g = lambda r, key=key: mib(r[key]["pss_kib"]) / n       # noqa: E731
        rows.append((f"{what}: per site", *side(g, "{:.2f}"), ratio(g)))
        for part in ("serve", "apache", "keeper", "site processes"):
            f = lambda r, key=key, part=part: mib(r[key]["parts"].get(part, (0, 0))[1])  # noqa
            rows.append((f"{what}: {part} (n / MiB)",
                         *[f"{res[b][key]['parts'].get(part, (0, 0))[0]} / {f(res[b]):.1f}"
                           for b in order], ""))
    f = lambda r: (mib(r["loaded"]["pss_kib"]) - mib(r["sleeping"]["pss_kib"])) / a.loaded  # noqa
    rows.append(("added per loaded site", *side(f), ratio(f)))
    f = lambda r: r["loaded"]["failed"]                             # noqa: E731
    rows.append(("failed requests during the load (of)", *[
        f"{res[b]['loaded']['failed']} of {res[b]['loaded']['requests']}" for b in order], ""))
    table(rows, hdr)
    print("goal: keeper <= 2 MiB per sleeping site")


def _report_cold(res, a, n):
    order, side, ratio, hdr = _sides(res)
    print(f"\n== cold start: first request to a sleeping site until its 200 "
          f"({max(a.cold, a.loaded)} sites one after another), s")
    rows = []
    for q in (50, 95):
        f = lambda r, q=q: percentile(r["cold"], q)               # noqa: E731
        rows.append((f"p{q}", *side(f, "{:.2f}"), ratio(f)))
    f = lambda r: max(r["cold"])                                   # noqa: E731
    rows.append(("max", *side(f, "{:.2f}"), ratio(f)))
    table(rows, hdr)


def _report_warm(res, a, n):
    order, side, ratio, hdr = _sides(res)
    print(f"\n== warm: {API} signed in, through the front vs gunicorn direct "
          f"(same site, same threads), {a.rounds} rounds of {a.duration} s, order alternating")
    rows = []
    for b in order:
        w = res[b]["warm"]
        for c in (1, 8):
            fr, gu = w[f"front {c}"], w[f"gunicorn {c}"]
            f_rps, g_rps = median([x["rps"] for x in fr]), median([x["rps"] for x in gu])
            f_lat, g_lat = median([x["p50_ms"] for x in fr]), median([x["p50_ms"] for x in gu])
            rows.append((b, c, " / ".join(f"{x['rps']:.1f}" for x in fr), f"{f_rps:.1f}",
                         " / ".join(f"{x['rps']:.1f}" for x in gu), f"{g_rps:.1f}",
                         f"{f_rps / g_rps:.2f}", f"{f_lat:.0f} / {g_lat:.0f}",
                         f"{sum(x['errors'] for x in fr)} / {sum(x['errors'] for x in gu)}"))
    table(rows, ("backend", "conns", "front req/s rounds", "front median",
                 "gunicorn req/s rounds", "gunicorn median", "ratio (goal >= 0.9)",
                 "p50 ms front / gunicorn", "errors front / gunicorn"))


def _report_new(res, a, n):
    order, side, ratio, hdr = _sides(res)
    print(f"\n== `linohost new` while {a.loaded} sites are under load")
    rows = []
    for key, fmt in (("new s", "{:.1f}"), ("new site first 200 s", "{:.2f}"),
                     ("requests", "{}"), ("failed", "{}"), ("failed during", "{}"),
                     ("with a process before", "{}"), ("p99 before ms", "{:.0f}"),
                     ("p99 during ms", "{:.0f}"), ("max during ms", "{:.0f}"),
                     ("window during s", "{:.1f}")):
        rows.append((key, *side(lambda r, key=key: r["new"][key], fmt), ""))
    rows.append(("other sites' processes restarted",
                 *side(lambda r: len(r["new"]["restarted"]), "{}"), ""))
    rows.append((f"of the {a.loaded} loaded ones",
                 *side(lambda r: len(r["new"]["loaded restarted"]), "{}"), ""))
    f = lambda r: r["new"]["p99 during ms"] / r["new"]["p99 before ms"]   # noqa: E731
    rows.append(("p99 during / before", *side(f, "{:.2f}"), ratio(f)))
    table(rows, hdr)
    print("goals: 0 failed, 0 other workers restarted")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--root", help="base directory of a host root to reuse and keep "
                                   "(its root/ is made if missing)")
    ap.add_argument("--cold", type=int, default=20, help="sites whose cold start is timed")
    ap.add_argument("--loaded", type=int, default=10, help="sites under load")
    ap.add_argument("--duration", type=int, default=5, help="seconds of each load")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--new-wait", type=int, default=300,
                    help="seconds to wait for the new site's first 200 (else: nan)")
    a = ap.parse_args()
    if a.sites < max(a.loaded, a.cold):
        raise SystemExit("--sites must be at least --loaded and --cold")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    h = KeptHost(a.root) if a.root else BenchHost("linohost-bench-density-")
    names = [f"d{i}" for i in range(1, a.sites + 1)]
    serve_log = open(h.base / "serve.log", "a")
    res = {}
    try:
        t = time.monotonic()
        with open(h.base / "make.log", "a") as log:
            make_sites(h, names, log)
        extra = sorted(set(h.sites()) - set(names))
        if extra:
            raise SystemExit(f"the host root has other sites too: {extra}")
        print(f"host root {h.root}: {a.sites} Cosi demo sites on SQLite "
              f"(ready after {time.monotonic() - t:.0f} s); {os.cpu_count()} cores")
        for b in a.backends.split(","):
            print(f"-- {b}: load average before {os.getloadavg()}", flush=True)
            phase = Phase(h, b, names, a, serve_log)
            try:
                res[b] = phase.run()
            except (Exception, SystemExit) as e:        # keep what was measured
                print(f"-- {b}: stopped early: {e}", flush=True)
                res[b] = phase.res
            print(f"-- {b}: load average after {os.getloadavg()}", flush=True)
            with open(h.base / "results.json", "w") as f:
                json.dump(res, f, default=str, indent=1)
        report(res, a, a.sites)
    finally:
        serve_log.close()
        h.close()


if __name__ == "__main__":
    sys.exit(main())
