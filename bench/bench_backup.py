"""Backup and restore of a Noi demo site on each engine (issue 4), side by side.

For each engine (SQLite, PostgreSQL, MariaDB) one Noi demo site is made, then, in
the same run and alternated over ROUNDS:

  * `linohost backup SITE` (native dump + Lino's portable dump) and
    `linohost backup SITE --no-portable` (native dump only): seconds and archive size;
  * `linohost restore ARCHIVE --as COPY` from the native-only archive (same engine);
  * `linohost restore ARCHIVE --as COPY --db OTHER` into the next engine through the
    portable dump;

and every restored copy is compared with its original, table by table (row count and
a digest of the rows), so a fast but wrong restore cannot hide in the numbers.

Usage: python bench/bench_backup.py [--rounds 1]
"""

import argparse
import json
import os

from common import BenchHost, median, table

ENGINES = ("sqlite", "postgresql", "mysql")

#: Every managed table's row count and a digest of its rows, computed inside the site.
FINGERPRINT = """
import hashlib, json
from django.apps import apps
out = {}
for m in apps.get_models():
    if m._meta.proxy or not m._meta.managed:
        continue
    rows = sorted(repr(r) for r in m.objects.order_by().values_list())
    out[m._meta.label] = [len(rows), hashlib.sha256("\\n".join(rows).encode()).hexdigest()]
print("FINGERPRINT", json.dumps(out, sort_keys=True))
"""
#: Filled by Django itself at startup, not the site's data.
VOLATILE = ("sessions.Session", "contenttypes.ContentType", "auth.Permission")


def fingerprint(h, site, ids=True):
    _, p = h("manage", site, "--", "shell", "-c", FINGERPRINT)
    data = json.loads(p.stdout.split("FINGERPRINT ", 1)[1].splitlines()[0])
    for v in VOLATILE:
        data.pop(v, None)
    return data if ids else {k: v[0] for k, v in data.items()}


def archive_of(p):
    return p.stdout.split()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    h = BenchHost()
    res = {e: {k: [] for k in ("full", "native", "restore", "cross", "full_kib", "native_kib")}
           for e in ENGINES}
    rows_of, same, cross_same = {}, {}, {}
    try:
        h("init", "--port", "18197")
        print("building the environment ...", flush=True)
        h("env", "create", "default", "noi")
        sites = {}
        for e in ENGINES:
            print(f"making a Noi demo site on {e} ...", flush=True)
            sites[e] = f"noi_{e[:2]}"
            h("new", sites[e], "--app", "noi", "--db", e)
            fp = fingerprint(h, sites[e])
            rows_of[e] = sum(n for n, _ in fp.values())
        n = 0
        for r in range(a.rounds):
            order = ENGINES if r % 2 == 0 else tuple(reversed(ENGINES))
            for i, e in enumerate(order):
                site, other = sites[e], ENGINES[(ENGINES.index(e) + 1) % 3]
                print(f"round {r + 1}: {e}", flush=True)
                t, p = h("backup", site)
                res[e]["full"].append(t)
                full = archive_of(p)
                res[e]["full_kib"].append(os.path.getsize(full) / 1024)
                t, p = h("backup", site, "--no-portable")
                res[e]["native"].append(t)
                native = archive_of(p)
                res[e]["native_kib"].append(os.path.getsize(native) / 1024)
                n += 1
                copy = f"r{n}_{e[:2]}"
                t, _ = h("restore", native, "--as", copy)
                res[e]["restore"].append(t)
                same[e] = fingerprint(h, copy) == fingerprint(h, site)
                h("rm", copy, "--yes", "--no-archive")
                copy = f"x{n}_{other[:2]}"
                t, _ = h("restore", full, "--as", copy, "--db", other)
                res[e]["cross"].append(t)
                a_, b_ = fingerprint(h, copy, ids=False), fingerprint(h, site, ids=False)
                cross_same[e] = a_ == b_
                for label in sorted(set(a_) | set(b_)):
                    if a_.get(label) != b_.get(label):
                        print(f"  {e} -> {other}: {label}: {b_.get(label)} rows, restored "
                              f"{a_.get(label)}", flush=True)
                h("rm", copy, "--yes", "--no-archive")

        print(f"\n## Noi demo site: backup and restore, median of {a.rounds} round(s)")
        table([(e, rows_of[e],
                f"{median(res[e]['full']):.1f}", f"{median(res[e]['full_kib']):.0f}",
                f"{median(res[e]['native']):.1f}", f"{median(res[e]['native_kib']):.0f}",
                f"{median(res[e]['restore']):.1f}", "yes" if same[e] else "NO",
                f"{median(res[e]['cross']):.1f} -> {ENGINES[(ENGINES.index(e) + 1) % 3]}",
                "yes" if cross_same[e] else "NO")
               for e in ENGINES],
              ("engine", "rows", "backup s", "KiB", "--no-portable s", "KiB",
               "restore --as s", "identical", "restore --db s", "same counts"))
    finally:
        h.close()


if __name__ == "__main__":
    main()
