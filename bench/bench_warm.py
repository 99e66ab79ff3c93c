"""Warm starts (issue 11): workers and commands forked from zygotes against plain starts.

One throw-away host root (or `--root`, kept) with N Cosi demo sites on SQLite, served
by `linohost serve` (keeper backend); `keeper.zygotes` is switched on and off in the
same run (the keeper rereads its config; a zygote is started again when it is back
on) and every measure alternates the two, in rounds (127.0.0.1 only, all bounded):

  * cold start: all sites asleep, then the first request of each of `--cold` sites
    through Apache until its 200: p50 and p95;
  * memory: a woken site's worker after 100 signed-in JSON API calls: USS (private)
    and PSS; the zygotes' own PSS; and the PSS of everything `serve` runs with all N
    sites asleep and with 10 of them awake;
  * `linohost manage SITE checkdata`, and `linohost run --all -j 2 -- checkdata`
    against a sequential loop of `manage.py checkdata` (plain processes, as before);
  * `linohost new` (a Cosi demo site) with the environment and a zygote ready.
Prints one table per measure and the ratios zygote/plain.

With `--empty` the sites are empty Cosi sites (`new --empty` and clones of it): their
rows where Lino's start-up reads are not the demo data's, so they start warm from a
zygote of their data variant, which the keeper starts once they told it (each site is
asked once before the measures of a zygote round).

Usage: python bench/bench_warm.py [--sites 20] [--cold 10] [--rounds 2] [--empty] [--root DIR]
"""

import argparse
import json
import os
import time
from pathlib import Path

import requests

from bench_fleet import loop
from bench_serve import API, free_port, login, start_serve, stop, wait_200
from common import BenchHost, KeptHost, median, percentile, table, tree_memory

MODES = ("zygote", "plain")
#: The demo's user robin (password 1234) in an empty site.
ROBIN = """
from lino.api import rt
u = rt.models.users.User(username="robin", user_type=rt.models.users.UserTypes.admin)
u.set_password("1234")
u.full_clean()
u.save()
"""


def set_config(h, **keys):
    """Change keys of linohost.toml (the keeper rereads it within a second)."""
    import tomllib

    import tomli_w
    path = h.root / "linohost.toml"
    data = tomllib.loads(path.read_text())
    for dotted, value in keys.items():
        table_name, leaf = dotted.split(".")
        data.setdefault(table_name, {})[leaf] = value
    path.write_text(tomli_w.dumps(data))


def status(h):
    return {r["name"]: r for r in json.loads(h("status", "--json")[1].stdout)}


def zygotes(h):
    return json.loads(h("status", "--zygotes", "--json")[1].stdout)


def use(h, mode, timeout=300):
    """Switch to *mode* and wait until it holds (zygotes ready, or none left)."""
    set_config(h, **{"keeper.zygotes": mode == "zygote"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        z = zygotes(h)
        if (mode == "zygote" and z and all(r["state"] == "ready" for r in z)) or \
                (mode == "plain" and not z):
            return
        time.sleep(0.5)
    raise SystemExit(f"zygotes did not settle for {mode}: {zygotes(h)}")


def learn_variant(h, port, names, timeout=300):
    """Ask each site once (its worker tells the keeper its data variant), then wait
    until a zygote of that variant is ready."""
    for n in names:
        requests.get(f"http://127.0.0.1:{port}/{n}/", timeout=300)
    deadline = time.monotonic() + timeout
    while not any(z["variant"] and z["state"] == "ready" for z in zygotes(h)):
        if time.monotonic() > deadline:
            raise SystemExit(f"no zygote of the sites' data variant: {zygotes(h)}")
        time.sleep(0.5)


def all_asleep(h, timeout=120):
    """Stop every worker (the keeper's `restart`: the site sleeps until its next request)."""
    from linohost.keeper import control
    from linohost.model.host import Host
    host = Host.open(h.root)
    for name, row in status(h).items():
        if row["pid"]:
            control.call(host, "restart", site=name)
    deadline = time.monotonic() + timeout
    while any(r["pid"] for r in status(h).values()):
        if time.monotonic() > deadline:
            raise SystemExit("sites do not fall asleep")
        time.sleep(0.5)


def cold_starts(h, port, names):
    out = []
    for n in names:
        t = time.perf_counter()
        r = requests.get(f"http://127.0.0.1:{port}/{n}/", timeout=300)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, (n, r.status_code)
    return out


def uss_pss(pid):
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in
                                               text.splitlines()[1:] if ":" in line)}
    return kb["Private_Clean"] + kb["Private_Dirty"], kb["Pss"]


def worker_memory(h, port, name):
    base = f"http://127.0.0.1:{port}/{name}/"
    sid = login(base)
    for _ in range(100):
        assert requests.get(base + API, cookies={"sessionid": sid}, timeout=60).status_code == 200
    return uss_pss(status(h)[name]["pid"])


def timed(h, *args):
    dt, p = h(*args, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--cold", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--root")
    ap.add_argument("--empty", action="store_true", help="empty sites (a data variant)")
    a = ap.parse_args()
    h = KeptHost(a.root) if a.root else BenchHost()
    port = free_port()
    serve = None
    try:
        if not (h.root / "linohost.toml").exists():
            h("init", "--port", port)
        if not (h.root / "envs" / "default").is_dir():
            print("building the environment ...", flush=True)
            h("env", "create", "default", "cosi")
        names = [f"s{i:03d}" for i in range(a.sites)]
        have = {p.stem for p in (h.root / "registry").glob("*.toml")}
        if "s000" not in have:
            h("new", "s000", "--app", "cosi", *(["--empty"] if a.empty else []))
            if a.empty:                       # a user to sign in as (the memory measure)
                h("manage", "s000", "--", "shell", "-c", ROBIN)
        for n in names[1:]:
            if n not in have:
                h("clone", "s000", n)
        print(f"{len(names)} Cosi {'empty' if a.empty else 'demo'} sites", flush=True)
        # Nothing but what we ask for; workers stay until put to sleep.
        set_config(h, **{"keeper.jobs": False, "keeper.idle_timeout": 900})
        log = open(h.base / "serve.log", "a")
        serve = start_serve(h, port, log)
        wait_200(f"http://127.0.0.1:{port}/", time.monotonic() + 600)
        results = {m: {"cold": [], "uss": [], "pss": [], "manage": [], "run": [], "new": [],
                       "asleep": [], "awake": [], "zygote_pss": []} for m in MODES}
        loops = []
        for r in range(a.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                use(h, mode)
                if a.empty and mode == "zygote":
                    learn_variant(h, port, names)
                res = results[mode]
                all_asleep(h)
                res["asleep"].append(tree_memory(serve.pid)["pss_kib"])
                res["zygote_pss"].append(sum(z["pss_kib"] or 0 for z in zygotes(h)))
                sample = names[r * a.cold % len(names):][:a.cold] or names[:a.cold]
                res["cold"] += cold_starts(h, port, sample)
                for n in names[:10]:
                    requests.get(f"http://127.0.0.1:{port}/{n}/", timeout=300)
                res["awake"].append(tree_memory(serve.pid)["pss_kib"])
                uss, pss = worker_memory(h, port, names[0])
                res["uss"].append(uss)
                res["pss"].append(pss)
                res["manage"].append(timed(h, "manage", names[1], "checkdata"))
                res["run"].append(timed(h, "run", "--all", "-j", "2", "--", "checkdata"))
                new = f"n{r}{mode[0]}"
                res["new"].append(timed(h, "new", new, "--app", "cosi",
                                        *(["--empty"] if a.empty else [])))
                h("rm", new, "--yes", "--no-archive")
                print(f"round {r + 1} {mode}: done", flush=True)
            loops.append(loop(h, names))
        print()
        ms = lambda xs: f"{median(xs) * 1000:.0f}"  # noqa: E731
        rows = []
        z, p = results["zygote"], results["plain"]
        rows.append(("cold start p50 (ms)", ms(z["cold"]), ms(p["cold"]),
                     f"{median(z['cold']) / median(p['cold']):.3f}"))
        rows.append(("cold start p95 (ms)", f"{percentile(z['cold'], 95) * 1000:.0f}",
                     f"{percentile(p['cold'], 95) * 1000:.0f}",
                     f"{percentile(z['cold'], 95) / percentile(p['cold'], 95):.3f}"))
        mib = lambda xs: f"{median(xs) / 1024:.0f}"  # noqa: E731
        for key, label in (("uss", "worker USS after 100 requests (MiB)"),
                           ("pss", "worker PSS after 100 requests (MiB)"),
                           ("zygote_pss", "zygotes PSS (MiB)"),
                           ("asleep", f"serve total PSS, {a.sites} asleep (MiB)"),
                           ("awake", f"serve total PSS, {min(10, a.sites)} of {a.sites} "
                                     f"awake (MiB)")):
            ratio = f"{median(z[key]) / median(p[key]):.3f}" if median(p[key]) else "-"
            rows.append((label, mib(z[key]), mib(p[key]), ratio))
        s = lambda xs: f"{median(xs):.2f}"  # noqa: E731
        for key, label in (("manage", "linohost manage SITE checkdata (s)"),
                           ("run", f"run --all -j 2 -- checkdata, {a.sites} sites (s)"),
                           ("new", f"new (Cosi {'empty' if a.empty else 'demo'}) (s)")):
            rows.append((label, s(z[key]), s(p[key]), f"{median(z[key]) / median(p[key]):.3f}"))
        rows.append((f"sequential loop of manage.py checkdata, {a.sites} sites (s)", "",
                     s(loops), ""))
        table(rows, ["measure", "zygote", "plain", "zygote/plain"])
        print(f"\nrun --all (zygote) / sequential loop: {median(z['run']) / median(loops):.3f}"
              f"   (plain run --all / loop: {median(p['run']) / median(loops):.3f})")
        print(f"counts: {len(z['cold'])} cold starts per mode, {a.rounds} rounds, "
              f"load average {os.getloadavg()[0]:.1f}")
    finally:
        if serve is not None:
            stop(serve)
        h.close()


if __name__ == "__main__":
    main()
