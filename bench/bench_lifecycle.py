"""Creating environments and sites (issue 2): linohost against getlino, side by side.

Measures in one run, on the same machine and the same base Python (/usr/bin/python3):

linohost (its own host root under /tmp, domain mode, so sites get React like getlino's):
  * `env create default cosi` with a fresh, empty PIP_CACHE_DIR (cold);
  * `env create warm cosi` with that cache, now filled (warm);
  * the first `new` in the environment (installs the app's requirements, runs Lino's
    `prep`, collects static files: once per environment);
  * `new sN --app cosi` (demo data, SQLite) with the environment ready, N rounds.
getlino (from PyPI, in its own venv; configured with --batch into a temporary HOME, no
web server, no linod, SQLite; run as the user `nobody` when we are root, because as root
getlino runs `apt-get upgrade` and restarts services machine-wide):
  * `startsite cosi gN --batch` with its default per-site virtualenv: the first run
    fills its (empty) pip cache, the next N are measured warm;
  * `manage.py buildcache` of one of those sites: as root `startsite` runs it too
    (linohost `new` builds the site cache), as nobody it does not;
  * `startsite cosi hN --batch --shared-env DIR`: getlino with one virtualenv for all
    sites, as linohost has (it still pip-installs and runs `install` every time).
Prints a table and the ratios. If getlino cannot be run, says why and prints linohost's
numbers alone. Removes everything it made.

Usage: python bench/bench_lifecycle.py [--rounds 3] [--no-getlino] [--no-shared-env]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchHost, median, table

BASE_PYTHON = "/usr/bin/python3"


class GetlinoUnavailable(Exception):
    pass


class Getlino:
    """getlino in its own venv, with a HOME (config, sites, pip cache) under /tmp."""

    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="getlino-bench-", dir="/tmp"))
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self):
        self.base.chmod(0o755)
        self.home = self.base / "home"
        self.home.mkdir()
        (self.home / "tmp").mkdir()               # Lino's prep moves media/ to $TMPDIR
        self.as_nobody = os.geteuid() == 0
        if self.as_nobody:
            if not shutil.which("runuser"):
                raise GetlinoUnavailable("running as root but `runuser` is missing "
                                         "(needed to run getlino as nobody)")
            subprocess.run(["chown", "-R", "nobody:nogroup", self.home], check=True)
        venv = self.base / "venv"
        if not Path(BASE_PYTHON).exists():
            raise GetlinoUnavailable(f"{BASE_PYTHON} not found")
        self._run([BASE_PYTHON, "-m", "venv", venv], "python -m venv", root=True)
        self._run([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check",
                   "getlino"], "pip install getlino", root=True)
        self.bin = venv / "bin"
        self.env = {"HOME": str(self.home), "PATH": f"{self.bin}:/usr/bin:/bin",
                    "LANG": "C.UTF-8", "TMPDIR": str(self.home / "tmp"),
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def _run(self, argv, what, root=False, cwd=None):
        argv = [str(a) for a in argv]
        if not root:
            envs = [f"{k}={v}" for k, v in self.env.items()]
            argv = ["env", "-i", *envs, *argv]
            if self.as_nobody:
                argv = ["runuser", "-u", "nobody", "--", *argv]
        t = time.perf_counter()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GetlinoUnavailable(f"{what}: {e}") from None
        dt = time.perf_counter() - t
        if p.returncode:
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            raise GetlinoUnavailable(f"{what} exited {p.returncode}:\n{tail}")
        return dt

    def configure(self):
        return self._run([self.bin / "getlino", "configure", "--batch", "--shared-env", "",
                          "--sites-base", self.home / "lino", "--server-domain", "localhost",
                          "--no-devtools", "--no-linod", "--web-server", "",
                          "--db-engine", "sqlite3", "--no-clone", "--no-https",
                          "--languages", "en"],
                         "getlino configure")

    def startsite(self, name, *extra, app="cosi", as_root=False):
        """*as_root*: as getlino runs on a server (its services, a server database),
        with its own HOME (its config) and root's PATH (it runs `service`)."""
        argv = [self.bin / "getlino", "startsite", app, name, "--batch", *extra]
        if as_root:
            env = {**self.env, "PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
            argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        return self._run(argv, f"getlino startsite {app} {name}", root=as_root)

    def manage(self, name, *args):
        project = self.home / "lino" / "lino_local" / name
        return self._run([project / "env" / "bin" / "python", "manage.py", *args],
                         f"{name}: manage.py {' '.join(args)}", cwd=project)

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


def measure(rounds, use_getlino, shared):
    """Set both tools up, then alternate their site creations so that the machine's
    noise falls on both alike. Returns (linohost times, getlino times, why not getlino)."""
    lh, gl, why = {}, {}, None
    cache = Path(tempfile.mkdtemp(prefix="linohost-bench-pip-", dir="/tmp"))
    pip_env = {"PIP_CACHE_DIR": str(cache)}       # empty: the first install is cold
    h, g = BenchHost(), None

    def getlino_step(key, fn, *args):
        nonlocal g, why
        if g is None:
            return
        try:
            t = fn(*args)
        except GetlinoUnavailable as e:
            why = str(e)
            g.close()
            g = None
            return
        if key.endswith("[]"):
            gl.setdefault(key[:-2], []).append(t)
        else:
            gl[key] = t

    try:
        h("init", "--port", "18198", "--mode", "domain", "--server-name", "bench.localhost",
          "--python", BASE_PYTHON)
        lh["cli"] = h("--version")[0]
        lh["env_cold"] = h("env", "create", "default", "cosi", env=pip_env)[0]
        lh["env_warm"] = h("env", "create", "warm", "cosi", env=pip_env)[0]
        lh["new_first"] = h("new", "first", "--app", "cosi", env=pip_env)[0]
        if use_getlino:
            try:
                g = Getlino()
                g.configure()
            except GetlinoUnavailable as e:
                why = str(e)
                if g is not None:
                    g.close()
                g = None
        else:
            why = "skipped (--no-getlino)"
        shared_env = g.home / "shared-env" if g else None
        getlino_step("gl_first", g and g.startsite, "g0")
        if shared:
            getlino_step("gls_first", g and g.startsite, "h0", "--shared-env", shared_env)
        for i in range(rounds):
            lh.setdefault("new", []).append(h("new", f"s{i}", "--app", "cosi", env=pip_env)[0])
            getlino_step("gl[]", g and g.startsite, f"g{i + 1}")
            if shared:
                getlino_step("gls[]", g and g.startsite, f"h{i + 1}", "--shared-env",
                             shared_env)
        getlino_step("gl_buildcache", g and g.manage, f"g{rounds}", "buildcache")
        lh["front_end"] = json.loads(h("show", "s0", "--json")[1].stdout)["front_end"]
    finally:
        if g is not None:
            g.close()
        h.close()
        shutil.rmtree(cache, ignore_errors=True)
    return lh, gl, why


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-getlino", action="store_true", help="measure linohost only")
    ap.add_argument("--no-shared-env", action="store_true",
                    help="skip getlino's variant with a shared virtualenv")
    a = ap.parse_args()
    started = time.perf_counter()
    lh, gl, why = measure(a.rounds, not a.no_getlino, not a.no_shared_env)

    n = a.rounds
    rows = [
        ("linohost --version (CLI start)", f"{lh['cli']:.2f}"),
        ("linohost env create cosi, empty pip cache", f"{lh['env_cold']:.1f}"),
        ("linohost env create cosi, pip cache", f"{lh['env_warm']:.1f}"),
        ("linohost new, first in the env (requirements, prep, static)",
         f"{lh['new_first']:.1f}"),
        (f"linohost new cosi ({lh['front_end']}), env ready, median of {n}",
         f"{median(lh['new']):.1f}  ({', '.join(f'{x:.1f}' for x in lh['new'])})"),
    ]
    if "gl" in gl:
        rows += [
            ("getlino startsite cosi, first (empty pip cache)", f"{gl['gl_first']:.1f}"),
            (f"getlino startsite cosi, pip cache, median of {n}",
             f"{median(gl['gl']):.1f}  ({', '.join(f'{x:.1f}' for x in gl['gl'])})"),
        ]
        if "gl_buildcache" in gl:
            rows.append(("getlino site: manage.py buildcache (startsite runs it as root)",
                         f"{gl['gl_buildcache']:.1f}"))
        if "gls" in gl:
            rows += [
                ("getlino startsite --shared-env, first (makes the env)", f"{gl['gls_first']:.1f}"),
                (f"getlino startsite --shared-env, env ready, median of {n}",
                 f"{median(gl['gls']):.1f}  ({', '.join(f'{x:.1f}' for x in gl['gls'])})"),
            ]
    print(f"bench_lifecycle: Cosi demo site on SQLite, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end, python {sys.version.split()[0]} "
          f"(runner), base python {BASE_PYTHON}; getlino as "
          f"{'nobody' if os.geteuid() == 0 else 'this user'}")
    table(rows, ("what", "seconds"))
    if why:
        print(f"\ngetlino not measured{' completely' if gl else ''}: {why}")
    if "gl" in gl:
        new, start = median(lh["new"]), median(gl["gl"])
        print("\nratios (target: linohost new / getlino startsite <= 0.125)")
        print(f"  linohost new / getlino startsite (both warm):            {new / start:.3f}")
        if "gl_buildcache" in gl:
            print(f"  linohost new / (getlino startsite + buildcache):         "
                  f"{new / (start + gl['gl_buildcache']):.3f}")
        if "gls" in gl:
            print(f"  linohost new / getlino startsite --shared-env:           "
                  f"{new / median(gl['gls']):.3f}")
        print(f"  linohost env create (cold) + first new / getlino first:  "
              f"{(lh['env_cold'] + lh['new_first']) / gl['gl_first']:.3f}")
        print(f"  linohost env create (warm) + first new / getlino warm:   "
              f"{(lh['env_warm'] + lh['new_first']) / start:.3f}")
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
