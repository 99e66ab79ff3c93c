"""nginx against Apache as the front server (issue 22), in one run on one host root.

One Cosi site (SQLite) behind the keeper of `linohost serve` (Apache, web_server
apache) and, on a second port, an nginx started here from the same code
(`serve_front.nginx_files`, :class:`OwnNginx`) in front of the *same* keeper socket, so
both reach the same worker. Then, in --rounds alternating rounds (the order flips
each round), wrk for --seconds against each front server:
  * a JSON API call (`api/contacts/Companies?fmt=json&limit=10`, signed in),
  * a static file from disk (`static/favicon2.ico`),
at 1 and 8 connections; the median requests/s of each, and nginx / Apache.
Then PSS of each front server alone (its whole process tree, after one request of
the landing page) with --sites sites configured (one real site, the others site
records: the config is rendered for all of them, none needs to run).

Usage: python bench/bench_front.py [--rounds 3] [--seconds 5] [--sites 200]
"""

import argparse
import os
import time

import requests

from bench_serve import free_port, login, start_serve, stop, wait_200
from bench_warm import set_config
from common import BenchHost, _process_table, _pss_rss, median, table, warm_up, wrk_latency

API = "api/contacts/Companies?fmt=json&limit=10"
STATIC = "static/favicon2.ico"


def context(root):
    from linohost.apply.context import Context
    from linohost.apply.system import System
    from linohost.model.host import Host
    host = Host.open(root)
    return Context(host, System(host.cfg))


def start_front(ctx, name, port):
    """Start Apache or nginx as `serve` would (config, configtest, foreground), without
    a keeper (the running serve's, if any, answers); return (front, Popen)."""
    from linohost.apply.serve import write_changed
    from linohost.apply.serve_front import FILES
    from linohost.backends.web import serve_apache
    from linohost.backends.web.nginx import OwnNginx
    from linohost.backends.process import process_backend
    from linohost.apply.serve_front import modules
    if name == "nginx":
        front = OwnNginx(ctx.host)
    else:
        front = serve_apache(ctx.host, modules(ctx, process_backend(ctx.host)))
    for d in front.dirs():
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    write_changed(FILES[name](ctx, front, "127.0.0.1", port))
    front.configtest()
    proc = front.popen()
    wait_200(f"http://127.0.0.1:{port}/", time.monotonic() + 60)
    return front, proc


def tree_pss(pid):
    """PSS (KiB) of *pid* and its descendants, and how many processes."""
    procs = _process_table()
    kids = {}
    for p, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(p)
    todo, total, n = [pid], 0, 0
    while todo:
        p = todo.pop()
        total += _pss_rss(p)[0]
        n += 1
        todo += kids.get(p, [])
    return total, n


def add_records(h, count):
    """Site records s0000... up to *count* sites in all (nothing of them runs)."""
    from linohost.model.site import Site
    have = len(list((h.root / "registry").glob("*.toml")))
    for i in range(count - have):
        (h.root / "registry" / f"s{i:04d}.toml").write_text(
            Site(name=f"s{i:04d}", app="cosi", env="default", db="sqlite",
                 settings_module="lino_cosi.lib.cosi.settings", title=f"Cosi {i}").dumps())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--sites", type=int, default=200)
    a = ap.parse_args()
    h = BenchHost("linohost-bench-front-")
    procs = []
    try:
        h("init", "--port", free_port())
        set_config(h, **{"keeper.jobs": False, "keeper.idle_timeout": 0})
        h("env", "create", "default", "cosi")
        site = f"front{os.getpid() % 10000}"     # its Unix user is unique on the machine
        h("new", site, "--app", "cosi")
        ports = {"apache": free_port(), "nginx": free_port()}
        log = open(h.base / "serve.log", "w")
        serve = start_serve(h, ports["apache"], log)           # Apache and the keeper
        procs.append(serve)
        wait_200(f"http://127.0.0.1:{ports['apache']}/{site}/", time.monotonic() + 300)
        ctx = context(h.root)
        _, nginx = start_front(ctx, "nginx", ports["nginx"])
        procs.append(nginx)
        sid = login(f"http://127.0.0.1:{ports['apache']}/{site}/")
        urls = {(front, kind): f"http://127.0.0.1:{port}/{site}/{path}"
                for front, port in ports.items()
                for kind, path in (("json", API), ("static", STATIC))}
        for url in urls.values():
            assert requests.get(url, cookies={"sessionid": sid}, timeout=120).status_code == 200
            warm_up(url, sid)
        rps = {}
        for r in range(a.rounds):
            order = ("apache", "nginx") if r % 2 == 0 else ("nginx", "apache")
            for front in order:
                for (f, kind), url in urls.items():
                    if f != front:
                        continue
                    for c in (1, 8):
                        res = wrk_latency(url, sid, c, a.seconds)
                        rps.setdefault((front, kind, c), []).append(res["rps"])
                        print(f"round {r + 1} {front:6} {kind:6} c={c}: {res['rps']:.0f} req/s "
                              f"p50 {res['p50_ms']:.2f} ms errors {res['errors']}", flush=True)
        rows = []
        for kind in ("json", "static"):
            for c in (1, 8):
                ap_, ng = median(rps["apache", kind, c]), median(rps["nginx", kind, c])
                rows.append((kind, c, f"{ap_:.0f}", f"{ng:.0f}", f"{ng / ap_:.2f}"))
        print(f"\nrequests/s, median of {a.rounds} rounds of {a.seconds} s, same keeper worker")
        table(rows, ["request", "connections", "Apache", "nginx", "nginx/Apache"])
        for p in procs:
            stop(p)
        procs.clear()

        add_records(h, a.sites)
        ctx = context(h.root)
        mem = []
        for name in ("apache", "nginx"):
            port = free_port()
            _, proc = start_front(ctx, name, port)
            procs.append(proc)
            time.sleep(1)
            pss, n = tree_pss(proc.pid)
            mem.append((name, a.sites, n, f"{pss / 1024:.1f}"))
            stop(proc)
            procs.remove(proc)
        print(f"\nPSS of the front server with {a.sites} sites configured")
        table(mem, ["front", "sites", "processes", "PSS MiB"])
    finally:
        for p in procs:
            stop(p)
        for f in (h.root / "registry").glob("s[0-9]*.toml"):
            f.unlink()
        h.close()


if __name__ == "__main__":
    main()
