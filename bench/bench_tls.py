"""HTTPS against HTTP (issue 12): requests per second on one site at 8 connections.

On a throw-away host root with its own environment and one Cosi demo site, `linohost
serve` runs alternately with tls.mode off and with tls.mode files (a certificate of a
CA made here with openssl); each round loads the site's main page (Lino renders it:
the sign-in page of an anonymous visitor) with ApacheBench (`ab -k`, keep-alive, 8
connections, bounded by -t) after a warm-up. Rounds alternate the order (HTTP first,
then HTTPS first). Prints requests per second of each round and the HTTPS/HTTP ratio
of the medians. 127.0.0.1 only. Needs `ab` (Debian apache2-utils).

Usage: python bench/bench_tls.py [--duration 10] [--rounds 2] [--path PATH]
                                 [--root ROOT --site SITE]
(--root: an existing host root and its site instead of a new one; its tls.mode is
switched for the rounds and set back to off at the end.)
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from common import LINOHOST, BenchHost, median, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tlsca import make_ca  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(h, log):
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    return subprocess.Popen([*LINOHOST, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ok(url, ca, proc, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}")
        try:
            if requests.get(url, verify=ca, timeout=300).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer")


def ab(url, duration):
    """Requests per second of `ab -k -c 8 -t duration url`."""
    p = subprocess.run(["ab", "-q", "-k", "-c", "8", "-t", str(duration), "-n", "1000000", url],
                       capture_output=True, text=True, timeout=duration + 120)
    out = p.stdout
    if p.returncode or "Non-2xx responses" in out:
        raise SystemExit(f"ab failed on {url}:\n{out}\n{p.stderr}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--path", default="", help="path under the site (default: main page)")
    ap.add_argument("--root", help="an existing host root to use (with --site)")
    ap.add_argument("--site", default="s")
    args = ap.parse_args()
    h = BenchHost("linohost-bench-tls-")
    if args.root:
        h.root = Path(args.root)
    try:
        ca = make_ca(h.base / "ca")
        port = free_port()
        h("init", "--port", port)
        if not args.root:
            dt, _ = h("env", "create", "default", "cosi")
            print(f"environment: {dt:.0f} s")
            h("new", args.site, "--app", "cosi")
        modes = {
            "http": ["--tls", "off"],
            "https": ["--tls", "files", "--cert-file", ca["cert"], "--key-file", ca["key"]],
        }
        rps = {"http": [], "https": []}
        rows = []
        for r in range(args.rounds):
            order = ["http", "https"] if r % 2 == 0 else ["https", "http"]
            for mode in order:
                h("init", *modes[mode])
                url = f"{mode}://127.0.0.1:{port}/{args.site}/{args.path}"
                with open(h.base / f"serve-{r}-{mode}.log", "w") as log:
                    proc = serve(h, log)
                    try:
                        wait_ok(url, str(ca["ca"]), proc)
                        ab(url, 2)                       # warm-up
                        value = ab(url, args.duration)
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait(60)
                rps[mode].append(value)
                rows.append((r + 1, mode, f"{value:.1f}"))
                print(f"round {r + 1} {mode}: {value:.1f} requests/s", flush=True)
        print()
        table(rows, ["round", "scheme", "requests/s (8 connections)"])
        http, https = median(rps["http"]), median(rps["https"])
        print(f"\nmedian: HTTP {http:.1f} req/s, HTTPS {https:.1f} req/s, "
              f"HTTPS/HTTP = {https / http:.2f}")
    finally:
        if args.root:
            h("init", "--tls", "off", check=False)
            shutil.rmtree(h.base, ignore_errors=True)
        else:
            h.close()


if __name__ == "__main__":
    main()
