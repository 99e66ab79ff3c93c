"""Fleet operations (issue 4): `linohost run` against a plain loop, backup and restore.

1. `linohost run --all -j N -- checkdata` over SITES Cosi demo sites against a plain
   sequential loop of `manage.py checkdata` over the same sites, alternated, in the
   same run: the ratio run/loop (goal <= 0.5 on 2 cores).
2. Backup and restore time and archive size of a Noi demo site on each engine.

Usage: python bench/bench_fleet.py [--sites 20] [--rounds 2]
"""

import argparse
import json
import os
import subprocess
import time

from common import BenchHost, median, table


def loop(h, names):
    """The plain way: manage.py checkdata for one site after the other, as its user."""
    rows = {r["name"]: r for r in json.loads(h("list", "--json")[1].stdout)}
    env = json.loads(h("env", "list", "--json")[1].stdout)[0]["path"]
    t = time.perf_counter()
    for n in names:
        kw = {"user": f"lino-{n}", "group": f"lino-{n}", "extra_groups": [], "umask": 0o027} \
            if os.geteuid() == 0 else {}
        subprocess.run([f"{env}/bin/python", f"{rows[n]['path']}/manage.py", "checkdata"],
                       cwd=rows[n]["path"], capture_output=True, check=True,
                       env={**os.environ, "HOME": str(h.root / "home" / n)}, **kw)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    h = BenchHost()
    try:
        h("init", "--port", "18199")
        print("building the environment ...", flush=True)
        h("env", "create", "default", "cosi", "noi")
        h("new", "s00", "--app", "cosi")
        names = ["s00"]
        for i in range(1, a.sites):
            h("clone", "s00", f"s{i:02d}")
            names.append(f"s{i:02d}")
        print(f"{len(names)} Cosi demo sites ready", flush=True)

        runs, loops = [], []
        for r in range(a.rounds):                 # alternate the order: the box is noisy
            for which in (("run", "loop") if r % 2 == 0 else ("loop", "run")):
                if which == "run":
                    dt, p = h("run", "--all", "-j", a.jobs, "--", "checkdata", check=False)
                    assert p.returncode == 0, p.stderr
                    runs.append(dt)
                else:
                    loops.append(loop(h, names))
        print(f"\n## run --all -j {a.jobs} -- checkdata vs a sequential loop, {len(names)} sites")
        table([("linohost run", f"{median(runs):.1f}", " ".join(f"{x:.1f}" for x in runs)),
               ("plain loop", f"{median(loops):.1f}", " ".join(f"{x:.1f}" for x in loops))],
              ("how", "median s", "rounds"))
        print(f"ratio run/loop: {median(runs) / median(loops):.2f} (goal <= 0.5)")

        print("\n## backup and restore of a Noi demo site", flush=True)
        rows = []
        for engine in ("sqlite", "postgresql", "mysql"):
            name = f"noi_{engine[:2]}"
            h("new", name, "--app", "noi", "--db", engine)
            t_b, p = h("backup", name)
            archive = p.stdout.split()[-1]
            t_r, _ = h("restore", archive, "--as", f"{name}_r")
            t_n, p = h("backup", name, "--no-portable")
            size_native = os.path.getsize(p.stdout.split()[-1])
            rows.append((engine, f"{t_b:.1f}", f"{t_r:.1f}", f"{t_n:.1f}",
                         f"{os.path.getsize(archive) / 1024:.0f}", f"{size_native / 1024:.0f}"))
        table(rows, ("engine", "backup s", "restore --as s", "backup --no-portable s",
                     "archive KiB", "--no-portable KiB"))
    finally:
        h.close()


if __name__ == "__main__":
    main()
