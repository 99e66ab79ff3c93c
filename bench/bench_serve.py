"""Serving (issue 3): the embedded Apache against gunicorn; memory, start-up, reloads.

Measures in one run, on a throw-away host root with its own environment and
Cosi demo sites (127.0.0.1 only; every load bounded by wrk's -d):
  * a Lino JSON API call, GET /SITE/api/contacts/Persons?fmt=json&limit=10 signed
    in as robin, through `linohost serve` (Apache, the site's mod_wsgi daemon) and
    through gunicorn (1 worker, the same number of threads, the same wsgi.py and
    database, the same user, an access log like Apache's), in rounds of wrk at 8
    connections and at 1 whose order alternates (Apache first, then gunicorn
    first): requests per second, median latency, ratios;
  * PSS and RSS of each site daemon before and after its first request, and the
    duration of that first request;
  * time from starting `linohost serve` to the first 200 of each site;
  * adding a site while serving (graceful reload): which site daemons restart,
    and the other sites' first request after the reload against before.
gunicorn is installed into the bench host's own environment `benchenv`. Needs wrk
(`apt-get install wrk`). Prints tables and ratios.

Usage: python bench/bench_serve.py [--sites 3] [--duration 10] [--rounds 2]
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from common import LINOHOST, BenchHost, median, table

API = "api/contacts/Persons?fmt=json&limit=10"
ENV = "benchenv"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes ---------------------------------------------------------------------

def start_serve(h, port, log):
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    return subprocess.Popen([*LINOHOST, "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def stop(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_200(url, deadline, cookies=None):
    """Seconds until *url* answers 200 (bounded by *deadline*, a monotonic time)."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=60, cookies=cookies).status_code == 200:
                return time.monotonic() - t0
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer 200 in time")


def children(pid):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def daemons(h):
    """{site: pid} of the mod_wsgi daemons of this host's Apache (its own children only)."""
    httpd = int((h.root / "apache" / "run" / "httpd.pid").read_text())
    out = {}
    for pid in children(httpd):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        m = re.match(r"\(wsgi:(\w+)\)", args)
        if m:
            out[m.group(1)] = pid
    return out


def memory(pid):
    """(PSS, RSS) in MB from /proc/PID/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(Pss|Rss):\s+(\d+) kB", text, re.M)}
    return kb["Pss"] / 1024, kb["Rss"] / 1024


def login(base):
    """A sessionid of robin at the Lino site under *base*."""
    s = requests.Session()
    s.get(base, timeout=120)
    token = [c.value for c in s.cookies if c.name == "csrftoken"][-1]
    r = s.post(base + "api/about/About/-99998",
               data={"an": "sign_in", "username": "robin", "password": "1234"},
               headers={"Referer": base, "X-CSRFToken": token}, timeout=60)
    assert '"success": true' in r.text, r.text[:200]
    return [c.value for c in s.cookies if c.name == "sessionid"][-1]


def timed_get(url, cookies=None):
    t = time.perf_counter()
    r = requests.get(url, cookies=cookies, timeout=120)
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"{url}: {r.status_code}")
    return dt


# -- load --------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, sid, connections, duration):
    """(requests/s, median latency ms) of wrk against *url*; bounded by *duration*."""
    threads = min(2, connections)
    p = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                        "--latency", "-H", f"Cookie: sessionid={sid}", url],
                       capture_output=True, text=True, timeout=duration + 60)
    out = p.stdout
    if p.returncode or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk against {url} went wrong:\n{out}{p.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    num, unit = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
    return rps, float(num) * _UNITS[unit]


def libpython_launcher(h):
    """A `python` of the bench environment that runs on the shared libpython, as
    mod_wsgi's daemons do (Debian's /usr/bin/python3 has it linked in statically).
    Built with the C compiler; None (and why) if that cannot be done."""
    env_python = h.root / "envs" / ENV / "bin" / "python"
    info = subprocess.run(
        [env_python, "-c", "import sysconfig as s; print(s.get_config_var('INCLUDEPY'));"
         "print(s.get_config_var('LIBDIR')); print(s.get_config_var('LDVERSION'))"],
        capture_output=True, text=True, check=True).stdout.split()
    include, libdir, ldversion = info
    if not shutil.which("cc") or not Path(include, "Python.h").exists():
        return None, "no C compiler or no Python.h"
    # In the environment's bin/, so that it finds the environment's pyvenv.cfg.
    out = env_python.parent / "python-libpython"
    src = h.base / "python-libpython.c"
    src.write_text("#include <Python.h>\n"
                   "int main(int argc, char **argv) { return Py_BytesMain(argc, argv); }\n")
    p = subprocess.run(["cc", "-O2", f"-I{include}", src, f"-L{libdir}", f"-lpython{ldversion}",
                        "-o", out], capture_output=True, text=True)
    if p.returncode:
        return None, f"cc failed: {p.stderr.strip()[:200]}"
    linked = subprocess.run(["ldd", out], capture_output=True, text=True).stdout
    lib = re.search(r"libpython\S+ => (\S+)", linked)
    return (out, lib.group(1)) if lib else (None, "not linked to a shared libpython")


def start_gunicorn(h, site, port, threads, python=None, tag="gunicorn"):
    """gunicorn of the bench environment serving *site*'s own wsgi.py, as the user
    the site's mod_wsgi daemon runs as (the site's own user when root); run by
    *python* if given, else by the environment's own."""
    project = h.root / site
    gunicorn = h.root / "envs" / ENV / "bin" / "gunicorn"
    as_owner = []
    if os.geteuid() == 0:
        user = _host_key(h, "site_user_prefix") + site
        as_owner = ["--user", user, "--group", user]
    help_text = subprocess.run([gunicorn, "--help"], capture_output=True, text=True).stdout
    ctl = ["--no-control-socket"] if "--no-control-socket" in help_text else []
    log = h.base / f"{tag}-access.log"
    return subprocess.Popen(
        [*([python] if python else []), gunicorn, "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", str(threads),
         "--worker-class", "gthread", "--access-logfile", log, *ctl, *as_owner,
         "--pythonpath", project / "apache", "wsgi:application"],
        cwd=project, stdout=open(h.base / f"{tag}.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)


# -- phases ------------------------------------------------------------------------

def first_requests(h, port, sites, log):
    """Serve (installs Apache the first time); daemon memory before/after a first request."""
    proc = start_serve(h, port, log)
    try:
        wait_200(f"http://127.0.0.1:{port}/", time.monotonic() + 1800)
        idle = {}
        deadline = time.monotonic() + 60
        while set(idle) != set(sites) and time.monotonic() < deadline:
            idle = {s: memory(p) for s, p in daemons(h).items()}
            time.sleep(0.5)
        time.sleep(2)                               # let them settle
        idle = {s: memory(p) for s, p in daemons(h).items()}
        rows = []
        for s in sites:
            dt = timed_get(f"http://127.0.0.1:{port}/{s}/")
            pss, rss = memory(daemons(h)[s])
            rows.append((s, f"{idle[s][0]:.0f} / {idle[s][1]:.0f}", f"{dt:.2f}",
                         f"{pss:.0f} / {rss:.0f}"))
        return rows
    finally:
        stop(proc)


def start_to_first_200(h, port, sites, log):
    """Start serve and poll every site at once: seconds to each one's first 200."""
    t0 = time.monotonic()
    proc = start_serve(h, port, log)
    times = {}

    def poll(name, url):
        wait_200(url, t0 + 300)
        times[name] = time.monotonic() - t0
    urls = {"/ (landing page)": f"http://127.0.0.1:{port}/"}
    urls.update({s: f"http://127.0.0.1:{port}/{s}/" for s in sites})
    threads = [threading.Thread(target=poll, args=kv) for kv in urls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return proc, times


def throughput(h, port, site, threads, duration, rounds, libpython):
    """wrk rounds against Apache and gunicorn (and gunicorn on *libpython*, a
    launcher or None) for one site; the order of the servers alternates."""
    order = [("apache", f"http://127.0.0.1:{port}/{site}/")]
    procs = {}
    for tag, python in (("gunicorn", None), ("gunicorn-libpython", libpython)):
        if tag == "gunicorn" or python:
            gport = free_port()
            procs[tag] = start_gunicorn(h, site, gport, threads, python, tag)
            order.append((tag, f"http://127.0.0.1:{gport}/{site}/"))
    try:
        sid = login(order[0][1])
        for srv, base in order:                              # same answer from all
            wait_200(base + API, time.monotonic() + 120, cookies={"sessionid": sid})
            r = requests.get(base + API, cookies={"sessionid": sid}, timeout=60)
            assert r.status_code == 200 and '"count": ' in r.text, (base, r.text[:200])
            wrk(base + API, sid, 4, 3)                       # warm-up
        res = {(srv, c): [] for srv, _ in order for c in (8, 1)}
        for i in range(rounds):
            for srv, base in (order if i % 2 == 0 else order[::-1]):
                for c in (8, 1):
                    res[srv, c].append(wrk(base + API, sid, c, duration if c > 1 else
                                           max(3, duration // 2)))
        mem = {"apache": [memory(daemons(h)[site])]}
        for tag, proc in procs.items():
            mem[tag] = [memory(p) for p in [proc.pid, *children(proc.pid)]]
        return [srv for srv, _ in order], res, mem
    finally:
        for proc in procs.values():
            stop(proc)


def reload_cost(h, port, sites, new_site):
    """Add a site while serving: the others' daemons and first requests, before/after."""
    sid = {s: login(f"http://127.0.0.1:{port}/{s}/") for s in sites}
    api = {s: f"http://127.0.0.1:{port}/{s}/{API}" for s in sites}
    before = {s: median([timed_get(api[s], {"sessionid": sid[s]}) for _ in range(5)])
              for s in sites}
    pids_before = daemons(h)
    t_new, _ = h("new", new_site, "--app", "cosi", "--env", ENV)
    t0 = time.monotonic()
    wait_200(f"http://127.0.0.1:{port}/{new_site}/", t0 + 300)
    t_served = time.monotonic() - t0
    pids_after = daemons(h)
    rows = []
    for s in sites:
        first = timed_get(api[s], {"sessionid": sid[s]})
        later = median([timed_get(api[s], {"sessionid": sid[s]}) for _ in range(5)])
        rows.append((s, pids_before[s], pids_after[s],
                     "yes" if pids_before[s] != pids_after[s] else "no",
                     f"{before[s] * 1000:.0f}", f"{first * 1000:.0f}", f"{later * 1000:.0f}"))
    return rows, t_new, t_served


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    h = BenchHost("linohost-bench-serve-")
    port = free_port()
    log = open(h.base / "serve.log", "w")
    sites = [f"bsite{i}" for i in range(1, a.sites + 1)]     # not "bs4": a module
    proc = None
    try:
        h("init", "--port", port)
        h("env", "create", ENV, "cosi")
        subprocess.run([h.root / "envs" / ENV / "bin" / "pip", "install", "-q",
                        "--disable-pip-version-check", "gunicorn"], check=True)
        for s in sites:
            h("new", s, "--app", "cosi", "--env", ENV)
        threads = _apache_threads(h)
        print(f"host root {h.root}; {len(sites)} Cosi demo sites; "
              f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}\n")

        print("== site daemons: memory (MB) and the first request after `serve`")
        table(first_requests(h, port, sites, log),
              ("site", "PSS / RSS before", "first request s", "PSS / RSS after"))

        print("\n== from starting `serve` to the first 200 (all polled at once)")
        proc, times = start_to_first_200(h, port, sites, log)
        table([(k, f"{v:.2f}") for k, v in times.items()], ("url", "seconds"))

        libpython, why = libpython_launcher(h)
        print(f"\n== {API} signed in, site {sites[0]}, {a.rounds} rounds, order alternating "
              f"(every server: 1 process x {threads} threads)")
        print("gunicorn-libpython: gunicorn on the shared libpython that mod_wsgi embeds "
              f"({why})" if libpython else f"(no gunicorn-libpython: {why})")
        servers, res, mem = throughput(h, port, sites[0], threads, a.duration, a.rounds,
                                       libpython)
        rows = []
        for c in (8, 1):
            for srv in servers:
                rps = [r for r, _ in res[srv, c]]
                lat = [m for _, m in res[srv, c]]
                rows.append((srv, c, " / ".join(f"{x:.0f}" for x in rps), f"{median(rps):.0f}",
                             f"{median(lat):.1f}"))
        table(rows, ("server", "connections", "req/s per round", "req/s median",
                     "p50 ms median"))
        for c in (8, 1):
            ap_rps = median([r for r, _ in res["apache", c]])
            ap_lat = median([m for _, m in res["apache", c]])
            for other in servers[1:]:
                o_rps = median([r for r, _ in res[other, c]])
                o_lat = median([m for _, m in res[other, c]])
                goal = " (goal >= 0.9)" if other == "gunicorn" else ""
                print(f"c={c}: ratio req/s apache / {other} = {ap_rps / o_rps:.2f}{goal}; "
                      f"p50 latency apache / {other} = {ap_lat / o_lat:.2f}")
        print("memory after the load (PSS / RSS MB; gunicorn: master + worker): "
              + "; ".join(f"{srv} " + " + ".join(f"{p:.0f} / {r:.0f}" for p, r in mem[srv])
                          for srv in servers))

        print("\n== adding a site while serving (`linohost new`, graceful reload)")
        rows, t_new, t_served = reload_cost(h, port, sites, f"bsite{a.sites + 1}")
        print(f"linohost new took {t_new:.1f} s; the new site answered 200 "
              f"{t_served:.1f} s after it returned")
        table(rows, ("site", "pid before", "pid after", "restarted", "API ms before (median)",
                     "first API ms after", "API ms after (median)"))
    finally:
        if proc is not None:
            stop(proc)
        log.close()
        h.close()


def _host_key(h, key):
    """A key of the host config (dotted), else its default from `linohost config keys`."""
    import ast
    import tomllib
    cfg = tomllib.loads((h.root / "linohost.toml").read_text())
    *parents, last = key.split(".")
    for k in parents:
        cfg = cfg.get(k, {})
    if last in cfg:
        return cfg[last]
    _, p = h("config", "keys")
    return ast.literal_eval(
        re.search(rf"`{re.escape(key)}` \| \w+ \| `([^`]*)`", p.stdout).group(1))


def _apache_threads(h):
    """apache.threads of the host (the daemons' threads)."""
    return int(_host_key(h, "apache.threads"))


if __name__ == "__main__":
    sys.exit(main())
