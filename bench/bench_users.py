"""Time added to `linohost new` by one Unix user per site (issue 12; goal <= 5 %).

As root, `new` does three things it did not do with one shared site user:
`useradd` (plus the HOME directory), the key file, and giving the project tree to
the site's user with the web server's group on media/ (`users.own_project`, run
once on the fresh tree and once after the demo data is copied in). This script
alternates, in one run: a whole `linohost new SITE --app cosi` (demo data,
SQLite, the environment's demo template already made), then the same per-site
user steps again, in process, against a scratch user and the site just made (its
full tree, media/cache included: an upper bound), and `userdel` (what `rm` adds).

Usage (as root, from the repository root):
    python bench/bench_users.py [--rounds 5] [--root EXISTING_HOST_ROOT]
With --root, the sites are made in that host root's default environment (and
removed afterwards) instead of in a new host root with a new environment.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from common import BenchHost, median, table


def user_steps(root, site, scratch):
    """Seconds of useradd + HOME + own_project twice, and of userdel."""
    from linohost.apply import users
    from linohost.apply.context import Context
    from linohost.apply.system import System
    from linohost.model.host import Host
    host = Host.open(root)
    system = System(host.cfg, host.home_dir)
    ctx = Context(host, system)
    home = system.home_of(scratch)
    t = time.perf_counter()
    system.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
                "--shell", users.NOLOGIN, system.user_of(scratch)], what="useradd")
    users.make_home(ctx, scratch)
    users.own_project(ctx, site)
    users.own_project(ctx, site)
    made = time.perf_counter() - t
    t = time.perf_counter()
    system.run(["userdel", system.user_of(scratch)], what="userdel")
    removed = time.perf_counter() - t
    home.rmdir()
    files = sum(len(d) + len(f) for _, d, f in os.walk(host.site_dir(site)))
    return made, removed, files


class ExistingHost(BenchHost):
    """An existing host root: only the sites made here are removed by close()."""

    def __init__(self, root):
        self.root = Path(root)
        self.made = []

    def close(self):
        for n in self.made:
            self("rm", n, "--yes", "--no-archive", check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--root", help="an existing host root to use (its default environment)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: per-site users exist only then")
    h = ExistingHost(a.root) if a.root else BenchHost("linohost-bench-users-")
    tag = f"bu{os.getpid() % 1000}"           # site names no other host root uses
    created = getattr(h, "made", [])
    try:
        if not a.root:
            h("init", "--port", "18197")
            print("building the environment ...", flush=True)
            h("env", "create", "default", "cosi")
        created.append(f"{tag}s0")
        h("new", f"{tag}s0", "--app", "cosi")   # requirements, prep, static: once per env
        news, mades, removes, sizes = [], [], [], []
        for r in range(1, a.rounds + 1):
            created.append(f"{tag}s{r}")
            dt, _ = h("new", f"{tag}s{r}", "--app", "cosi")
            news.append(dt)
            made, removed, files = user_steps(h.root, f"{tag}s{r}", f"{tag}x{r}")
            mades.append(made)
            removes.append(removed)
            sizes.append(files)
        print(f"\n## `new` (Cosi demo, SQLite) and its per-site user steps, {a.rounds} rounds")
        fmt = lambda xs, k=1: " ".join(f"{x * k:.0f}" if k > 1 else f"{x:.2f}" for x in xs)  # noqa: E731
        table([("linohost new (whole)", f"{median(news):.2f} s", fmt(news)),
               ("useradd + HOME + own_project x2", f"{median(mades) * 1000:.0f} ms",
                fmt(mades, 1000)),
               ("userdel (added to rm)", f"{median(removes) * 1000:.0f} ms", fmt(removes, 1000))],
              ("what", "median", "rounds"))
        print(f"files and directories in a project tree: {median(sizes):.0f}")
        print(f"time added to new: {median(mades) / (median(news) - median(mades)) * 100:.1f} % "
              f"(goal <= 5 %)")
    finally:
        h.close()


if __name__ == "__main__":
    main()
