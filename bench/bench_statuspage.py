"""The status page's history (issue 21): what a day of history costs the keeper.

One host root with N sleeping sites (`new --app cosi --empty`, SQLite: ~2 s each;
`--root DIR` keeps them for the next run) under `linohost serve` (keeper,
`keeper.jobs` off), started twice, in one run:
  * without a history file (the rings hold one sample), then
  * with a day of history written beforehand through keeper/history.py's own API
    (288 samples per site and for the host, as a day at 300 s gives),
and at each: the keeper process's PSS and RSS, and the status page `/_linohost/`
through the front server (median of --loads, after one warm-up; its size). Then
the history itself, in this process, for --ring-sites names (default 200, whatever N
is): its bytes (tracemalloc, as loaded from its file), one sample (`History.add`), its
save (`History.save`), the file's size, and the page built from as many sleeping rows
with that day (`statuspage.page`, no site facts). The goal: the keeper holds at most
50 MiB more with the day than without.

Usage: python bench/bench_statuspage.py [--sites 200] [--loads 10] [--root DIR]
                                        [--ring-sites 200]
"""

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

import requests

from bench_serve import free_port, start_serve, stop
from bench_warm import set_config
from common import BenchHost, KeptHost, _pss_rss, _process_table, median, table

from linohost.keeper import statuspage
from linohost.keeper.history import SIZE, History
from linohost.keeper.slot import Slot

DAY_STEP = 300


def make_sites(h, count):
    """Empty Cosi sites hist000... up to *count* in all; seconds of each made now."""
    have, times = set(h.sites()), []
    for i in range(count):
        name = f"hist{i:03d}"
        if name not in have:
            times.append(h("new", name, "--app", "cosi", "--empty")[0])
            if len(times) % 25 == 0:
                print(f"  {len(times)} sites made, last {times[-1]:.1f} s", flush=True)
    return times


def wait_200(proc, url, deadline):
    """Wait until *url* answers 200, while serve (*proc*) runs."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve ended ({proc.returncode}): see its log")
        try:
            if requests.get(url, timeout=60).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 in time")


def keeper_pid(serve_pid, deadline):
    """The pid of serve's keeper (its child whose argv ends with ``keeper``)."""
    while time.monotonic() < deadline:
        for pid, (ppid, argv) in _process_table().items():
            if ppid == serve_pid and argv.rstrip().endswith(" keeper"):
                return pid
        time.sleep(0.2)
    raise SystemExit("no keeper under serve")


def a_day(names, now, seed=21):
    """A History of a day: 288 samples of *names*, a tenth of them awake at a time."""
    rnd, history = random.Random(seed), History()
    requests_, errors = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for i in range(SIZE):
        sample = {}
        for n in names:
            awake = rnd.random() < 0.1
            requests_[n] += rnd.randrange(200) if awake else 0
            errors[n] += rnd.randrange(3) if awake else 0
            sample[n] = (rnd.randrange(150_000, 300_000) if awake else 0,
                         requests_[n], errors[n])
        history.add(now - (SIZE - i) * DAY_STEP, sample, rnd.randrange(1_000_000, 4_000_000))
    return history


def measure_served(h, port, loads, log):
    """Keeper PSS/RSS (KiB), page load ms (median) and page KiB of one serve."""
    proc = start_serve(h, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_200(proc, base + "/", time.monotonic() + 600)
        page = base + "/_linohost/"
        wait_200(proc, page, time.monotonic() + 120)
        times, size = [], 0
        for _ in range(loads):
            t = time.perf_counter()
            r = requests.get(page, timeout=120)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
            size = len(r.content)
        pss, rss = _pss_rss(keeper_pid(proc.pid, time.monotonic() + 30))
        return {"keeper_pss_kib": pss, "keeper_rss_kib": rss,
                "page_ms": 1000 * median(times), "page_max_ms": 1000 * max(times),
                "page_kib": size / 1024}
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--root", help="keep the host root and its sites here")
    ap.add_argument("--ring-sites", type=int, default=200)
    a = ap.parse_args()
    h = KeptHost(a.root) if a.root else BenchHost("linohost-bench-status-")
    log = open(Path(h.base) / "serve.log", "w")
    try:
        if not h.root.exists():
            h("init", "--port", free_port())
            set_config(h, **{"keeper.jobs": False})
            t = time.monotonic()
            h("env", "create", "default", "cosi")
            print(f"env create: {time.monotonic() - t:.0f} s", flush=True)
        made = make_sites(h, a.sites)
        if made:
            print(f"new --empty: median {median(made):.1f} s of {len(made)}", flush=True)
        (h.root / "run" / "keeper-history.json").unlink(missing_ok=True)
        names = h.sites()
        port = free_port()
        out = {"no history": measure_served(h, port, a.loads, log)}

        path = h.root / "run" / "keeper-history.json"
        day = a_day(names, time.time())
        day.save(path)
        out["a day of history"] = measure_served(h, port, a.loads, log)

        ring_names = [f"r{i:04d}" for i in range(a.ring_sites)]
        a_day(ring_names, time.time()).save(path)
        tracemalloc.start()
        held = History.load(path)
        rings = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        sample = {n: (0, 10, 0) for n in ring_names}
        t = time.perf_counter()
        for i in range(10):
            held.add(time.time() + i, sample, 1)
        add_ms = (time.perf_counter() - t) * 100
        t = time.perf_counter()
        held.save(path)
        save_ms = (time.perf_counter() - t) * 1000
        reply = {"sites": [Slot(n, None, None).row() for n in ring_names], "zygotes": []}
        built = []
        for _ in range(a.loads):
            t = time.perf_counter()
            statuspage.page(reply, {}, history=held)
            built.append(time.perf_counter() - t)

        rows = [(what, f"{m['keeper_pss_kib'] / 1024:.1f}", f"{m['keeper_rss_kib'] / 1024:.1f}",
                 f"{m['page_ms']:.0f}", f"{m['page_max_ms']:.0f}", f"{m['page_kib']:.0f}")
                for what, m in out.items()]
        print(f"\n{len(names)} sleeping sites; {time.strftime('%Y-%m-%d %H:%M')}; "
              f"load {open('/proc/loadavg').read().split()[0]}; python {sys.version.split()[0]}")
        table(rows, ("keeper", "PSS MiB", "RSS MiB", "page ms (median)", "page ms (max)",
                     "page KiB"))
        before, after = out["no history"], out["a day of history"]
        grown = (after["keeper_rss_kib"] - before["keeper_rss_kib"]) / 1024
        print(f"\nkeeper RSS with the day - without: {grown:+.1f} MiB (goal <= 50); "
              f"PSS {(after['keeper_pss_kib'] - before['keeper_pss_kib']) / 1024:+.1f} MiB; "
              f"page with/without: {after['page_ms'] / before['page_ms']:.2f}")
        print(f"{len(ring_names)} sites' day in this process: held {rings / 2**20:.2f} MiB "
              f"(tracemalloc, loaded); file {path.stat().st_size / 1024:.0f} KiB; one sample "
              f"{add_ms:.1f} ms; its save {save_ms:.0f} ms; the page built "
              f"{1000 * median(built):.0f} ms (median)")
    finally:
        log.close()
        h.close()


if __name__ == "__main__":
    main()
