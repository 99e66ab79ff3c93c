"""Noi live (issue 20): notification latency, what the live part costs a worker, and
the cold start of a sleeping Noi site.

One throw-away host root with two Noi demo sites served by `linohost serve` (keeper):
`live` (channels on, as Noi has them) and `nolive`, the same but for its own settings
(``SITE.plugins.linod.use_channels = False``: no websockets, no channel worker). With
`keeper.zygotes` off both start plainly, so their workers differ by the live part only.

  * latency: a websocket signed in at /live/WS/; a `linohost manage live -- shell`
    sends 20 notifications 0.3 s apart, each stamped with the time it was created;
    p50 and p95 of received - created;
  * memory: each site's worker after 100 signed-in JSON API calls: USS and PSS;
  * requests per second of a JSON API call at 1 and 8 connections (wrk), the two
    sites alternating in rounds: ratio live/nolive;
  * cold start (zygotes on again): the live site asleep, its first request until
    200, and until a websocket connects after it: p50 of --cold.
All on 127.0.0.1, every load bounded in time.

Usage: python bench/bench_live.py [--rounds 2] [--cold 5] [--seconds 5]
"""

import argparse
import json
import os
import re
import time
from pathlib import Path

import requests
import websocket

from bench_serve import API, free_port, login, start_serve, stop, wait_200
from common import BenchHost, median, percentile, table, warm_up, wrk_latency

SEND = """
import json, time, datetime
from lino.api import rt
from lino.modlib.notify.api import send_notification
robin = rt.models.users.User.objects.get(username="robin")
for i in range(20):
    time.sleep(0.3)
    send_notification(user=robin, primary_key=i, subject=json.dumps(time.time()), body="b",
                      created=datetime.datetime.now(), action_url="/")
"""


def status(h):
    return {r["name"]: r for r in json.loads(h("status", "--json")[1].stdout)}


def set_key(h, key, value):
    """Change one key of linohost.toml (the keeper rereads it every second)."""
    import tomllib
    import tomli_w
    path = h.root / "linohost.toml"
    data = tomllib.loads(path.read_text())
    table_, _, leaf = key.rpartition(".")
    (data.setdefault(table_, {}) if table_ else data)[leaf] = value
    path.write_text(tomli_w.dumps(data))
    time.sleep(1.5)


def asleep(h, name):
    os.utime(h.root / name / "apache" / "wsgi.py")           # restart: it sleeps
    deadline = time.monotonic() + 60
    while status(h)[name]["state"] != "sleeping":
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not go to sleep")
        time.sleep(0.2)


def uss_pss(pid):
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024, kb["Pss"] / 1024


def connect(port, name, sid, timeout=30):
    return websocket.create_connection(f"ws://127.0.0.1:{port}/{name}/WS/",
                                       cookie=f"sessionid={sid}", timeout=timeout)


def latency(h, port, sid):
    ws = connect(port, "live", sid)
    h("manage", "live", "--", "shell", "-c", SEND.replace("range(20)", "range(1)"))
    ws.recv()                                          # warm
    import subprocess
    import sys
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    sender = subprocess.Popen([sys.executable, "-m", "linohost", "manage", "live", "--",
                               "shell", "-c", SEND], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    out = []
    try:
        while len(out) < 20:
            data = json.loads(ws.recv())
            out.append(time.time() - float(data["subject"]))
    finally:
        sender.wait(120)
        ws.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    h = BenchHost("linohost-bench-live-")
    proc = None
    try:
        port = free_port()
        h("init", "--port", port)
        h("env", "create", "default", "noi")
        for name in ("live", "nolive"):
            h("new", name, "--app", "noi")
        with (h.root / "nolive" / "settings.py").open("a") as f:
            f.write("SITE.plugins.linod.use_channels = False\n")
        set_key(h, "keeper.zygotes", False)
        proc = start_serve(h, port, open(h.base / "serve.log", "w"))
        base = {n: f"http://127.0.0.1:{port}/{n}/" for n in ("live", "nolive")}
        for url in base.values():
            wait_200(url, time.monotonic() + 600)
        sid = {n: login(url) for n, url in base.items()}

        lat = latency(h, port, sid["live"])
        print(f"\nnotification latency (created in another process -> received at "
              f"/live/WS/), 20: p50 {median(lat) * 1000:.0f} ms, "
              f"p95 {percentile(lat, 95) * 1000:.0f} ms")

        mem = {}
        for n, url in base.items():
            for _ in range(100):
                requests.get(url + API, cookies={"sessionid": sid[n]}, timeout=60)
            mem[n] = uss_pss(status(h)[n]["pid"])
        table([(n, f"{u:.0f}", f"{p:.0f}") for n, (u, p) in mem.items()],
              ["worker after 100 API calls", "USS MiB", "PSS MiB"])
        print(f"USS live/nolive {mem['live'][0] / mem['nolive'][0]:.2f}, "
              f"PSS {mem['live'][1] / mem['nolive'][1]:.2f}")

        rps = {(n, c): [] for n in base for c in (1, 8)}
        for n in base:
            warm_up(base[n] + API, sid[n])
        for _ in range(args.rounds):
            for c in (1, 8):
                for n in base:
                    rps[n, c].append(wrk_latency(base[n] + API, sid[n], c, args.seconds)["rps"])
        table([(c, f"{median(rps['live', c]):.1f}", f"{median(rps['nolive', c]):.1f}",
                f"{median(rps['live', c]) / median(rps['nolive', c]):.2f}") for c in (1, 8)],
              ["connections", "live req/s", "nolive req/s", "live/nolive"])

        set_key(h, "keeper.zygotes", True)
        deadline = time.monotonic() + 600
        while not any(z["state"] == "ready" for z in json.loads(
                h("status", "--zygotes", "--json")[1].stdout)):
            if time.monotonic() > deadline:
                raise SystemExit("no zygote became ready")
            time.sleep(1)
        cold, ws_after = [], []
        for _ in range(args.cold):
            asleep(h, "live")
            t = time.monotonic()
            wait_200(base["live"], time.monotonic() + 300)
            cold.append(time.monotonic() - t)
            connect(port, "live", sid["live"]).close()
            ws_after.append(time.monotonic() - t)
        row = status(h)["live"]
        zygote = row.get("zygote") or f"a plain start ({row.get('plain_reason')})"
        print(f"\ncold start of the sleeping Noi site ({args.cold}, worker from "
              f"{zygote}): first 200 p50 {median(cold):.2f} s; "
              f"websocket connected p50 {median(ws_after):.2f} s after the request")
    finally:
        if proc:
            stop(proc)
        h.close()


if __name__ == "__main__":
    main()
