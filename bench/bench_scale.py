"""Nothing grows with the count (issue 24): one host root measured at --compare sites
(default 100), then grown to --sites N and measured again, in one run.

Cosi demo sites (SQLite, prefix mode) under `linohost serve` with the keeper; the
keeper's task schedules are off (keeper.jobs = false: the wake-ups of every site for
its schedule are issue 18's, measured by bench_storm.py). At each size:
  * `new` of each site made for it (median; with the keeper running, as its service
    does on a host), `list`, `status --json`, `show SITE`
    (median of 3 each), the same figures per site;
  * `serve` started to the landing page's first 200, the landing page itself (median
    of 5) and its size, the lines of the web server's config;
  * `new` while serving (to "ready": the served Apache routes it), its first 200,
    its `rm` while serving;
  * cold starts: every site asleep, then the first request of 20 random sites, one
    after the other (p50, max);
  * disk per site (project, HOME, secrets; and of it media/cache), over 20 random sites;
  * PSS of serve's whole tree with every site asleep, and per sleeping site;
  * CPU of serve's whole tree over --idle seconds, every site asleep (% of one core).
Then each figure at N against the one at --compare (per site where it is a per-site
cost), and the issue's goals. 127.0.0.1 only; every wait bounded.

Usage: python bench/bench_scale.py --sites N [--compare 100] [--idle 60] [--root DIR]
(--root keeps the host root and its sites for the next run: making 2,000 takes long.)
With --records-only: N site records alone (no project, no user, nothing runs), to time
what `list`, `status --json` and `show` themselves cost per site, in seconds.
"""

import argparse
import json
import os
import stat
import random
import subprocess
import time
from pathlib import Path

import requests

from bench_serve import free_port, start_serve, stop, wait_200
from bench_warm import all_asleep, set_config
from common import LINOHOST, BenchHost, KeptHost, median, table, tree_memory

COLD = 20
TICK = os.sysconf("SC_CLK_TCK")


def make_sites(h, names):
    """`new` of each missing site of *names*, with the keeper running (as its service
    does on a host: `new` runs Lino's tasks warm, forked from a zygote); seconds of each."""
    have = set(h.sites())
    if not set(names) - have:
        return []
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    keeper = subprocess.Popen([*LINOHOST, "keeper"], env=env, stdin=subprocess.DEVNULL,
                              stdout=open(h.base / "keeper-new.log", "a"),
                              stderr=subprocess.STDOUT)
    try:
        return _make(h, names, have)
    finally:
        stop(keeper)


def _make(h, names, have):
    times = []
    for i, n in enumerate(names):
        if n in have:
            continue
        dt, _ = h("new", n, "--app", "cosi")
        times.append(dt)
        if len(times) % 50 == 0:
            print(f"  {len(times)} sites made, last {dt:.1f} s", flush=True)
    return times


def timed3(h, *args, runs=3, check=True):
    return median([h(*args, check=check)[0] for _ in range(runs)])


def disk(paths):
    """Bytes on disk (allocated blocks) of the files under *paths*; a file of the page
    cache (hard links from N sites and the store) counts 1/N in each site."""
    total = 0
    for top in paths:
        if not top.exists():
            continue
        if top.is_file():
            total += top.lstat().st_blocks * 512
            continue
        for d, dirs, files in os.walk(top):
            for f in [d, *(os.path.join(d, x) for x in files)]:
                try:
                    st = os.lstat(f)
                except OSError:
                    continue
                shared = stat.S_ISREG(st.st_mode) and st.st_nlink > 1
                total += st.st_blocks * 512 / (st.st_nlink - 1 if shared else 1)
    return total


def cpu_ticks(root_pid):
    """utime+stime of *root_pid*'s tree, with what its ended children used."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(d.name)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += procs.get(pid, (0, 0))[1]
        todo.extend(kids.get(pid, ()))
    return total


def config_lines(h):
    """Lines of the vhosts file the embedded Apache parses."""
    return len((h.root / "apache" / "run" / "sites.conf").read_text().splitlines())


def measure(h, n, port, idle, rng):
    """Every figure of the host at *n* sites."""
    names = h.sites()
    assert len(names) == n, (len(names), n)
    out = {"sites": n,
           "list_s": timed3(h, "list"), "status_json_s": timed3(h, "status", "--json"),
           "show_s": timed3(h, "show", names[-1])}
    sample = rng.sample(names, min(COLD, n))
    sizes = [disk([h.root / s, h.root / "home" / s, *(h.root / "secrets").glob(f"*-{s}")])
             for s in sample]
    caches = [disk([h.root / s / "media" / "cache"]) for s in sample]
    out["disk_mib"] = sum(sizes) / len(sizes) / 2**20
    out["cache_mib"] = sum(caches) / len(caches) / 2**20
    log = open(h.base / f"serve-{n}.log", "a")
    t = time.monotonic()
    serve = start_serve(h, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_200(base + "/", t + 600)
        out["serve_to_landing_s"] = time.monotonic() - t
        times = []
        for _ in range(5):
            t = time.perf_counter()
            r = requests.get(base + "/", timeout=60)
            times.append(time.perf_counter() - t)
        out["landing_s"], out["landing_kib"] = median(times), len(r.content) / 1024
        out["config_lines"] = config_lines(h)
        extra = f"x{n}"
        out["new_serving_s"], _ = h("new", extra, "--app", "cosi")
        out["new_first_200_s"] = wait_200(f"{base}/{extra}/", time.monotonic() + 600)
        out["rm_serving_s"], _ = h("rm", extra, "--yes", "--no-archive")
        all_asleep(h)
        cold = []
        for s in rng.sample(names, min(COLD, n)):
            t = time.perf_counter()
            assert requests.get(f"{base}/{s}/", timeout=300).status_code == 200, s
            cold.append(time.perf_counter() - t)
        out["cold_p50_s"], out["cold_max_s"] = median(cold), max(cold)
        all_asleep(h)
        time.sleep(5)                     # workers gone, the keeper quiet again
        mem = tree_memory(serve.pid)
        out["pss_mib"] = mem["pss_kib"] / 1024
        out["pss_parts_mib"] = {k: round(p / 1024, 1) for k, (_, p) in mem["parts"].items()}
        c0, t0 = cpu_ticks(serve.pid), time.monotonic()
        time.sleep(idle)
        out["idle_cpu_pct"] = 100 * (cpu_ticks(serve.pid) - c0) / TICK / (time.monotonic() - t0)
    finally:
        stop(serve)
    return out


#: (figure, key, whole?): a whole-host figure (list, memory ...) is also given per
#: site and per site added; the others are each one operation or one site's.
FIGURES = (("new (median of those made)", "new_s", False),
           ("list", "list_s", True), ("status --json", "status_json_s", True),
           ("show SITE", "show_s", False),
           ("serve to landing page", "serve_to_landing_s", True),
           ("landing page", "landing_s", True), ("landing page KiB", "landing_kib", True),
           ("web server config lines", "config_lines", True),
           ("new while serving", "new_serving_s", False),
           ("its first 200", "new_first_200_s", False),
           ("rm while serving", "rm_serving_s", False),
           ("cold start p50", "cold_p50_s", False), ("cold start max", "cold_max_s", False),
           ("disk per site MiB", "disk_mib", False), ("of it media/cache MiB", "cache_mib", False),
           ("PSS of serve asleep MiB", "pss_mib", True),
           ("idle CPU % of a core", "idle_cpu_pct", True))


def ratio(small, big, key, whole):
    """big/small; for a whole-host figure, of its share per site."""
    a, b = small[key], big[key]
    if not a:
        return float("nan")
    return (b / big["sites"]) / (a / small["sites"]) if whole else b / a


def report(small, big):
    n, m = small["sites"], big["sites"]
    rows = []
    for label, key, whole in FIGURES:
        a, b = small[key], big[key]
        rows.append((label, f"{a:.3g}", f"{b:.3g}", f"{b / a:.2f}" if a else "",
                     f"{ratio(small, big, key, whole):.2f}" if whole else "",
                     f"{(b - a) / (m - n):.3g}" if whole else ""))
    table(rows, ["figure", f"at {n}", f"at {m}", f"{m} / {n}", "per site", "per added site"])
    print(f"\nPSS per sleeping site added: {(big['pss_mib'] - small['pss_mib']) / (m - n):.3f} "
          f"MiB (goal <= 0.2)")
    print(f"disk per demo site: {big['disk_mib']:.2f} MiB, of it media/cache "
          f"{big['cache_mib']:.2f} MiB (goal <= 1 MiB beyond its data)")
    worse = [label for label, key, whole in FIGURES
             if key not in ("disk_mib", "cache_mib") and ratio(small, big, key, whole) > 1.5]
    print(f"figures per site (or per operation) beyond 1.5x of those at {n}: "
          + (", ".join(worse) or "none"))


def records_only(h, sizes):
    """`list`, `status --json`, `show` over site records alone (no project, no user,
    nothing runs): what the commands themselves cost per site, at each of *sizes*."""
    from linohost.model.site import Site
    h("init", "--port", free_port())
    reg = h.root / "registry"
    reg.mkdir(exist_ok=True)
    out = []
    for n in sizes:
        for i in range(n):
            path = reg / f"s{i:04d}.toml"
            if not path.exists():
                path.write_text(Site(name=f"s{i:04d}", app="cosi", env="default", db="sqlite",
                                     settings_module="lino_cosi.lib.cosi.settings",
                                     title=f"Cosi demo {i}").dumps())
        out.append({"sites": n, "list_s": timed3(h, "list", "--json"),
                    "status_json_s": timed3(h, "status", "--json", check=False),
                    "show_s": timed3(h, "show", f"s{n - 1:04d}")})
        print(json.dumps(out[-1]), flush=True)
    for p in reg.glob("*.toml"):               # nothing of them to remove but the record
        p.unlink()
    a, b = out
    added = b["sites"] - a["sites"]
    table([(k, f"{a[k]:.3f}", f"{b[k]:.3f}", f"{(b[k] - a[k]) / added * 1000:.2f}")
           for k in ("list_s", "status_json_s", "show_s")],
          ["command (s)", f"at {a['sites']}", f"at {b['sites']}", "ms per site added"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, required=True)
    ap.add_argument("--compare", type=int, default=100)
    ap.add_argument("--idle", type=int, default=60, help="seconds of idle CPU measured")
    ap.add_argument("--root", help="keep the host root here (and reuse its sites)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--records-only", action="store_true",
                    help="only list/status/show over site records (no Lino site is made)")
    a = ap.parse_args()
    if not 0 < a.compare < a.sites:
        ap.error("--compare must be smaller than --sites")
    if a.records_only:
        h = BenchHost()
        try:
            records_only(h, (a.compare, a.sites))
        finally:
            h.close()
        return
    h = KeptHost(a.root) if a.root else BenchHost()
    port, rng = free_port(), random.Random(a.seed)
    try:
        if not (h.root / "linohost.toml").exists():
            h("init", "--port", port)
        if not (h.root / "envs" / "default").is_dir():
            print("building the environment ...", flush=True)
            h("env", "create", "default", "cosi")
        set_config(h, **{"keeper.jobs": False})
        names = [f"s{i:04d}" for i in range(a.sites)]
        results = []
        for n in (a.compare, a.sites):
            print(f"making sites up to {n} ...", flush=True)
            made = make_sites(h, names[:n])
            for extra in set(h.sites()) - set(names):     # left by an interrupted run
                h("rm", extra, "--yes", "--no-archive")
            print(f"measuring at {n} sites ...", flush=True)
            r = measure(h, n, port, a.idle, rng)
            r["new_s"] = median(made) if made else float("nan")
            results.append(r)
            print(json.dumps(r), flush=True)
        print()
        report(*results)
    finally:
        h.close()


if __name__ == "__main__":
    main()
