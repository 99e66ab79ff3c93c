"""`linohost logs SITE`: the site's worker log and its requests, in time order, only
its own; `-f` follows a request and a worker restart."""

import os
import subprocess
import threading
import time

import pytest
import requests

from hoststate import wait_for
from runner import LINOHOST

pytestmark = pytest.mark.slow


def test_logs_show_the_sites_requests_and_its_worker_in_order(host, server, cosi_sites):
    name, other = cosi_sites["sqlite"], cosi_sites["postgresql"]
    marker = f"/{name}/api/contacts/Persons?fmt=json&limit=1&logs={time.time()}"
    assert requests.get(server.base + marker, timeout=300).status_code in (200, 403)
    requests.get(server.url(other), timeout=300)
    def logged():
        out = host("logs", name, "-n", "0").stdout
        return marker in out and out
    lines = wait_for("the request in the log", logged, timeout=30).splitlines()
    assert all(line.startswith("[20") for line in lines), lines[:3]
    assert [line[:21] for line in lines] == sorted(line[:21] for line in lines)
    assert not [line for line in lines if f"/{other}/" in line]
    if server.backend == "keeper":                  # its worker's own lines come along
        assert any(f"serving {name} with" in line for line in lines), lines[-10:]
    assert len(host("logs", name, "-n", "3").stdout.splitlines()) == 3
    assert host("logs", name, "--since", "1d").stdout.strip()
    later = host("logs", name, "--since", "2999-01-01T00:00").stdout
    assert later == ""


def test_logs_follow_a_request_and_a_restart(host, kserver, cosi_sites):
    name = cosi_sites["mysql"]
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    proc = subprocess.Popen([*LINOHOST, "logs", name, "-f", "-n", "1"], env=env,
                            stdout=subprocess.PIPE, text=True)
    seen = []                       # read by a thread: blocking reads lose nothing
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        time.sleep(3)                               # it has printed its last line
        requests.get(kserver.url(name, "?follow=1"), timeout=300)
        os.utime(host.root / name / "apache" / "wsgi.py")      # a new worker next time
        wait_for("the old worker to leave",
                 lambda: "leaving" in host("logs", name, "-n", "5").stdout
                 or "stopping" in host("logs", name, "-n", "5").stdout, timeout=60)
        requests.get(kserver.url(name, "?follow=2"), timeout=300)
        wait_for("the second request and the new worker",
                 lambda: any("follow=2" in s for s in seen)
                 and any(f"serving {name}" in s for s in seen), timeout=30,
                 detail=lambda: (seen, host("logs", name, "-n", "20").stdout))
        assert any("follow=1" in s for s in seen), (seen, host("logs", name, "-n", "20").stdout)
    finally:
        proc.terminate()
        proc.wait(10)


def test_logs_bad_input(host, cosi_sites):
    name = cosi_sites["sqlite"]
    for args in (("nosuchsite",), (name, "--since", "yesterday"), (name, "-n", "-1")):
        p = host("logs", *args, check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
