"""The keeper's worker server (issue 10): waitress against gunicorn, one site.

The same Lino site (its own apache/wsgi.py, database, user) served directly on a
127.0.0.1 port by
  * waitress exactly as the keeper runs it: linohost's own worker (keeper/worker.py,
    run by the environment's Python as the site user, waitress in the process with
    threads, the listening socket bound beforehand and handed over with sockets=[...]);
  * gunicorn, gthread worker class, 1 worker, the same number of threads;
and measured alike, the order alternating each round:
  * start-up: from starting the process to the first 200 of the site's front page;
  * a Lino JSON API call signed in (GET /SITE/api/contacts/Persons?fmt=json&limit=10),
    wrk at 8 and at 1 connections (request timeout 60 s): requests/s, median and p99
    latency, errors, ratios;
  * PSS/RSS of the serving process(es) after the load (gunicorn: master + worker).
Needs wrk. Every load is bounded by wrk's -d.

Usage: python bench/bench_worker_server.py [--root DIR --site NAME] [--duration 8]
       [--rounds 3] [--startups 2]
  --root reuses the host root under DIR (e.g. the one bench_density.py --root made)
  and its site NAME; without it a throw-away host with one Cosi demo site is made.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from linohost.keeper import protocol, shipped

from bench_serve import API, ENV, _host_key, free_port, login, start_gunicorn, stop, wait_200
from common import BenchHost, KeptHost, median, table, tree_memory, warm_up, wrk_latency


def start_waitress(h, site, port, threads, module="worker", sources=None):
    """linohost's keeper worker serving *site* on a listening TCP socket it inherits,
    as the keeper starts it (its status pipe drained by a thread); *module*: the
    shipped module whose main() runs, *sources*: more of them ({name: source})."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    project = h.root / site
    request = {"site": site, "project": str(project), "keeper_pid": os.getpid(),
               "threads": threads, "idle_timeout": 0, "grace": 30, "jobs": None}
    env = {**os.environ, **shipped.environ(), "LINOHOST_LISTEN_FD": str(sock.fileno()),
           **{f"LINOHOST_SOURCE_{k}": v for k, v in (sources or {}).items()},
           "LINOHOST_STATUS_FD": str(status_w), protocol.START: json.dumps(request)}
    as_owner = {}
    if os.geteuid() == 0:
        user = _host_key(h, "site_user_prefix") + site     # the site's own, as bench_serve
        as_owner = {"user": user, "group": user, "extra_groups": []}
    try:
        proc = subprocess.Popen(
            shipped.argv(h.root / "envs" / ENV / "bin" / "python", module, project),
            cwd=project, stdin=subprocess.DEVNULL, env=env, pass_fds=(sock.fileno(), status_w),
            stdout=open(h.base / "waitress.log", "a"), stderr=subprocess.STDOUT,
            start_new_session=True, **as_owner)
    finally:
        os.close(status_w)
        sock.close()                         # the worker holds it now

    def drain():
        while os.read(status_r, 4096):
            pass
        os.close(status_r)
    threading.Thread(target=drain, daemon=True).start()
    return proc


SERVERS = {"waitress": start_waitress,
           "gunicorn": lambda h, site, port, threads: start_gunicorn(h, site, port, threads)}


def startup(h, site, server, threads):
    """Seconds from starting *server* to the first 200 of the site's front page."""
    port = free_port()
    t = time.monotonic()
    proc = SERVERS[server](h, site, port, threads)
    try:
        wait_200(f"http://127.0.0.1:{port}/{site}/", t + 300)
        return time.monotonic() - t
    finally:
        stop(proc)


def one_site_host(root, site, prefix, default_site):
    """(host, site): the kept host root under *root* with its *site*, or a throw-away
    host with one Cosi demo site *default_site*."""
    if bool(root) != bool(site):
        raise SystemExit("--root and --site go together")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    if root:
        return KeptHost(root), site
    h = BenchHost(prefix)
    try:
        h("init")
        h("env", "create", ENV, "cosi")
        h("new", default_site, "--app", "cosi", "--env", ENV)
    except BaseException:
        h.close()
        raise
    return h, default_site


def loads(h, site, servers, threads, procs, rounds, duration):
    """Start each of *servers* ({name: start function}) on a port of its own (into
    *procs*), sign in once, warm each up, then wrk at 8 and 1 connections in *rounds*
    alternating their order: {(name, connections): [wrk_latency]}."""
    order = list(servers)
    ports = {}
    for s in order:
        ports[s] = free_port()
        procs[s] = servers[s](h, site, ports[s], threads)
    urls = {s: f"http://127.0.0.1:{ports[s]}/{site}/" for s in order}
    for s in order:
        wait_200(urls[s], time.monotonic() + 300)
    sid = login(urls[order[0]])                # one database: valid on all
    for s in order:
        wait_200(urls[s] + API, time.monotonic() + 60, cookies={"sessionid": sid})
        warm_up(urls[s] + API, sid)
    res = {(s, c): [] for s in order for c in (8, 1)}
    for i in range(rounds):
        for s in (order if i % 2 == 0 else order[::-1]):
            for c in (8, 1):
                res[s, c].append(wrk_latency(urls[s] + API, sid, c, duration))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", help="base directory of a host root to reuse (and keep)")
    ap.add_argument("--site", help="its site to serve (with --root)")
    ap.add_argument("--duration", type=int, default=8, help="seconds of each wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--startups", type=int, default=2, help="start-ups timed per server")
    a = ap.parse_args()
    h, site = one_site_host(a.root, a.site, "linohost-bench-worker-", "wsite1")
    procs = {}
    try:
        if not (h.root / "envs" / ENV / "bin" / "gunicorn").exists():
            subprocess.run([h.root / "envs" / ENV / "bin" / "pip", "install", "-q",
                            "--disable-pip-version-check", "gunicorn"], check=True)
        threads = int(_host_key(h, "keeper.threads"))
        order = list(SERVERS)
        print(f"site {site} of {h.root}; 1 process x {threads} threads each; "
              f"{os.cpu_count()} cores; load average {os.getloadavg()}\n")

        starts = {s: [] for s in order}
        for i in range(a.startups):
            for s in (order if i % 2 == 0 else order[::-1]):
                starts[s].append(startup(h, site, s, threads))
        print("== start-up: process start to the first 200 of the front page, s")
        table([(s, " / ".join(f"{x:.2f}" for x in starts[s]), f"{median(starts[s]):.2f}")
               for s in order], ("server", "runs", "median"))
        print(f"ratio waitress / gunicorn: "
              f"{median(starts['waitress']) / median(starts['gunicorn']):.2f}", flush=True)

        res = loads(h, site, SERVERS, threads, procs, a.rounds, a.duration)
        mem = {s: tree_memory(procs[s].pid) for s in order}

        print(f"\n== {API} signed in, {a.rounds} rounds of {a.duration} s, order alternating")
        rows = []
        for c in (8, 1):
            for s in order:
                rps = [r["rps"] for r in res[s, c]]
                lat = [r["p50_ms"] for r in res[s, c]]
                rows.append((s, c, " / ".join(f"{x:.1f}" for x in rps), f"{median(rps):.1f}",
                             " / ".join(f"{x:.0f}" for x in lat), f"{median(lat):.0f}",
                             f"{median([r['p99_ms'] for r in res[s, c]]):.0f}",
                             sum(r["errors"] for r in res[s, c])))
        table(rows, ("server", "connections", "req/s per round", "req/s median",
                     "p50 ms per round", "p50 ms median", "p99 ms median", "errors"))
        for c in (8, 1):
            rps = [median([r["rps"] for r in res[s, c]]) for s in order]
            lat = [median([r["p50_ms"] for r in res[s, c]]) for s in order]
            print(f"c={c}: waitress / gunicorn: req/s {rps[0] / rps[1]:.2f}, "
                  f"p50 latency {lat[0] / lat[1]:.2f}")

        print("\n== memory after the load (MiB)")
        table([(s, mem[s]["processes"], f"{mem[s]['pss_kib'] / 1024:.1f}",
                f"{mem[s]['rss_kib'] / 1024:.1f}") for s in order],
              ("server", "processes", "PSS", "RSS"))
        print(f"ratio PSS waitress / gunicorn: "
              f"{mem['waitress']['pss_kib'] / mem['gunicorn']['pss_kib']:.2f}; "
              f"load average after {os.getloadavg()}")
    finally:
        for p in procs.values():
            stop(p)
        h.close()


if __name__ == "__main__":
    sys.exit(main())
