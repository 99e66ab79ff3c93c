"""A burst of first requests (issue 18): N sleeping Cosi demo sites of one group get
their first request at the same moment, right after `linohost serve` starts ("after a
start": the group's zygote is still starting) and with the keeper running and its
zygote ready ("steady"). Two keeper policies alternate in each round, in one run:

  * admission (the defaults): at most keeper.max_starting (one per core) plain starts
    at a time and four times as many forks; a site whose zygote is starting waits for
    it (keeper.zygote_wait);
  * at once (keeper.max_starting = 100000, keeper.zygote_wait = 0): every first
    request starts its worker at once, plainly while the zygote starts, as the keeper
    did before admission.

Per burst: time to each site's first 200 (p50, max), how many started plainly, and the
peak PSS of serve's whole tree (sampled every 0.5 s). 127.0.0.1 only, all bounded.

Usage: python bench/bench_storm.py [--sites 50] [--rounds 1] [--root DIR]
                                   [--policies admission,"at once"]
(at 200 sites "at once" asks for 200 plain starts, about 56 GiB: leave it out where the
machine has less)
"""

import argparse
import concurrent.futures
import json
import threading
import time

import requests

from bench_serve import free_port, start_serve, stop, wait_200
from bench_warm import all_asleep, set_config, status, zygotes
from common import BenchHost, KeptHost, median, table, tree_memory

POLICIES = {"admission": {"keeper.max_starting": 0, "keeper.zygote_wait": 60},
            "at once": {"keeper.max_starting": 100000, "keeper.zygote_wait": 0}}


def burst(h, port, names, serve_pid):
    """First request of every site at once: (seconds per site, peak PSS KiB)."""
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_memory(serve_pid)["pss_kib"])
            except (OSError, KeyError):
                pass
            time.sleep(0.5)

    def first(n):
        t = time.perf_counter()
        r = requests.get(f"http://127.0.0.1:{port}/{n}/", timeout=300)
        assert r.status_code == 200, (n, r.status_code)
        return time.perf_counter() - t

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            times = list(pool.map(first, names))
    finally:
        done.set()
        sampler.join()
    return times, peak[0]


def wait_ready_zygote(h, timeout=600):
    deadline = time.monotonic() + timeout
    while not any(z["state"] == "ready" for z in zygotes(h)):
        if time.monotonic() > deadline:
            raise SystemExit(f"no zygote ready: {zygotes(h)}")
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--root")
    ap.add_argument("--policies", default=",".join(POLICIES))
    a = ap.parse_args()
    policies = [p for p in POLICIES if p in a.policies.split(",")]
    h = KeptHost(a.root) if a.root else BenchHost()
    port = free_port()
    try:
        if not (h.root / "linohost.toml").exists():
            h("init", "--port", port)
        if not (h.root / "envs" / "default").is_dir():
            print("building the environment ...", flush=True)
            h("env", "create", "default", "cosi")
        names = [f"s{i:03d}" for i in range(a.sites)]
        have = {p.stem for p in (h.root / "registry").glob("*.toml")}
        for n in names:
            if n not in have:
                h("new", n, "--app", "cosi", "--front-end", "extjs")
        print(f"{len(names)} Cosi demo sites", flush=True)
        set_config(h, **{"keeper.jobs": False, "keeper.idle_timeout": 900})
        results = {(p, when): [] for p in policies for when in ("after a start", "steady")}
        for r in range(a.rounds):
            for policy in (policies if r % 2 == 0 else policies[::-1]):
                set_config(h, **POLICIES[policy])
                log = open(h.base / "serve.log", "a")
                serve = start_serve(h, port, log)
                try:
                    wait_200(f"http://127.0.0.1:{port}/", time.monotonic() + 600)
                    times, peak = burst(h, port, names, serve.pid)
                    plain = sum(1 for n in names if status(h)[n]["start"] == "plain")
                    results[(policy, "after a start")].append((times, peak, plain))
                    wait_ready_zygote(h)
                    all_asleep(h)
                    times, peak = burst(h, port, names, serve.pid)
                    plain = sum(1 for n in names if status(h)[n]["start"] == "plain")
                    results[(policy, "steady")].append((times, peak, plain))
                finally:
                    stop(serve)
                print(f"round {r + 1} {policy}: done", flush=True)
        rows = []
        for (policy, when), runs in results.items():
            times = [t for ts, _, _ in runs for t in ts]
            rows.append((when, policy, f"{median(times):.1f}", f"{max(times):.1f}",
                         f"{max(p for _, p, _ in runs) / 1024:.0f}",
                         sum(pl for _, _, pl in runs)))
        print()
        table(sorted(rows), ["burst", "policy", "first 200 p50 (s)", "max (s)",
                             "peak PSS of serve (MiB)", "plain starts"])
        for when in ("after a start", "steady") if len(policies) == 2 else ():
            adm = [t for ts, _, _ in results[("admission", when)] for t in ts]
            old = [t for ts, _, _ in results[("at once", when)] for t in ts]
            print(f"{when}: admission / at once, max first answer "
                  f"{max(adm) / max(old):.2f}, p50 {median(adm) / median(old):.2f}")
        print(json.dumps({f"{p} {w}": [[round(t, 2) for t in ts] for ts, _, _ in runs]
                          for (p, w), runs in results.items()}))
    finally:
        h.close()


if __name__ == "__main__":
    main()
