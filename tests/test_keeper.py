"""The keeper backend: sites sleep, wake on their first request without losing
it, never restart each other, and survive the death of workers and keeper."""

import contextlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import host_config, site_pids, status, wait_for
from linohost.keeper import states
from linohost.model.host import Host
from test_apache import descendants

slow = pytest.mark.slow


# -- the state machine (no processes) -----------------------------------------------

def test_only_the_documented_transitions_are_allowed():
    states.check(states.SLEEPING, states.STARTING)
    states.check(states.STARTING, states.FAILED)
    states.check(states.FAILED, states.STARTING)
    for old, new in [(states.SLEEPING, states.RUNNING), (states.RUNNING, states.STARTING),
                     (states.FAILED, states.RUNNING), (states.STOPPING, states.RUNNING)]:
        with pytest.raises(states.BadTransition):
            states.check(old, new)


def test_backoff_grows_and_is_capped():
    assert [states.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert states.backoff(50) == 60


def test_init_switches_the_process_backend(bare):
    def backend():
        return Host.open(bare.root).cfg["process_backend"]
    assert backend() == "keeper"                    # the default
    bare("init", "--process-backend", "mod_wsgi")
    assert backend() == "mod_wsgi"
    bare("init", "--process-backend", "keeper")
    assert backend() == "keeper"
    p = bare("init", "--process-backend", "uwsgi", check=False)
    assert p.returncode == 2 and "uwsgi" in p.stderr and backend() == "keeper"


# -- real keeper, real Apache, real Lino sites ----------------------------------------

def put_to_sleep(host, name):
    """Restart *name* the documented way (wsgi.py touched) and wait till it sleeps."""
    os.utime(host.root / name / "apache" / "wsgi.py")
    wait_for(f"{name} asleep", lambda: status(host)[name]["state"] == "sleeping")


class Load:
    """Threads that GET *urls* in turn until stopped, recording every failure."""

    def __init__(self, urls, threads=3, limit=600):
        self.urls, self.limit = urls, limit
        self.stop = threading.Event()
        self.count, self.failures = 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, i):
        deadline = time.monotonic() + self.limit
        n = i
        while not self.stop.is_set() and time.monotonic() < deadline:
            url = self.urls[n % len(self.urls)]
            n += 1
            try:
                r = requests.get(url, timeout=120)
                ok, what = r.status_code == 200, r.status_code
            except requests.RequestException as e:
                ok, what = False, repr(e)
            with self.lock:
                self.count += 1
                if not ok:
                    self.failures.append((url, what))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


@slow
def test_new_and_rm_under_load_fail_no_request_and_restart_no_other_site(host, kserver,
                                                                          cosi_sites):
    urls = [kserver.url(n) for n in cosi_sites.values()]
    for u in urls:
        assert requests.get(u, timeout=300).status_code == 200
    before = site_pids(host)
    name = host.unique("busy")
    with Load(urls) as load:
        host("new", name, "--app", "cosi", "--empty")
        wait_for("the new site", lambda: requests.get(kserver.url(name)).status_code == 200,
                 timeout=300, every=1)
        host("rm", name, "--yes", "--no-archive")
        wait_for("the removed site gone",
                 lambda: requests.get(kserver.url(name)).status_code == 404, every=1)
        time.sleep(2)
    assert load.failures == []
    assert load.count > 10
    after = site_pids(host)
    assert {n: after.get(n) for n in cosi_sites.values()} == \
        {n: before[n] for n in cosi_sites.values()}
    assert not (host.root / "run" / "sockets" / f"{name}.sock").exists()


@pytest.fixture
def idle_timeout(host):
    """Set keeper.idle_timeout for this test (the keeper rereads its config)."""
    with contextlib.ExitStack() as stack:
        def set_(seconds):
            stack.enter_context(host_config(host, **{"keeper.idle_timeout": seconds}))
            time.sleep(1.5)                      # the keeper looks every second
        yield set_
    time.sleep(1.5)


def worker_pids(host, name):
    """Pids of the workers the keeper started for *name*, oldest first (its log)."""
    log = (host.root / "logs" / "keeper.log").read_text()
    return [int(p) for p in re.findall(rf"{name}: starting worker (\d+)", log)]


@slow
def test_idle_worker_leaves_and_the_next_request_wakes_the_site(host, kserver, cosi_sites,
                                                               idle_timeout):
    name = cosi_sites["sqlite"]
    idle_timeout(4)
    put_to_sleep(host, name)
    cold = status(host)[name]["cold_starts"]
    assert requests.get(kserver.url(name), timeout=300).status_code == 200
    first = worker_pids(host, name)[-1]
    # (`linohost status` itself may take longer than the idle timeout on a busy machine)
    wait_for("the idle worker to leave", lambda: status(host)[name]["state"] == "sleeping",
             timeout=60)
    row = status(host)[name]
    assert row["pid"] is None and row["cold_starts"] == cold + 1
    assert not Path(f"/proc/{first}").exists()
    assert requests.get(kserver.url(name), timeout=300).status_code == 200
    second = worker_pids(host, name)[-1]
    assert second != first
    assert status(host)[name]["cold_starts"] == cold + 2


@slow
def test_fifty_concurrent_first_requests_start_one_worker_and_all_are_answered(
        host, kserver, cosi_sites):
    name = cosi_sites["mysql"]
    put_to_sleep(host, name)
    cold = status(host)[name]["cold_starts"]
    barrier = threading.Barrier(50)
    codes = []

    def one():
        barrier.wait()
        try:
            codes.append(requests.get(kserver.url(name), timeout=300).status_code)
        except requests.RequestException as e:
            codes.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 50
    assert status(host)[name]["cold_starts"] == cold + 1
    # the worker reports its count at most once a second
    wait_for("50 requests counted", lambda: status(host)[name]["requests"] >= 50, timeout=30)


@slow
def test_a_killed_worker_is_replaced_at_the_next_request(host, kserver, cosi_sites):
    name = cosi_sites["postgresql"]
    assert requests.get(kserver.url(name), timeout=300).status_code == 200
    pid = status(host)[name]["pid"]
    slow_request = threading.Thread(target=lambda: requests.get(
        kserver.url(name) + "api/contacts/Companies?fmt=json", timeout=300))
    slow_request.start()
    os.kill(pid, signal.SIGKILL)
    slow_request.join()
    assert requests.get(kserver.url(name), timeout=300).status_code == 200
    row = status(host)[name]
    assert row["pid"] != pid and row["state"] == "running"
    assert "SIGKILL" in row["last_failure"]


def keeper_pid(server):
    for pid in descendants(server.proc.pid):
        try:
            if b"keeper" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            pass
    return None


@slow
def test_a_killed_keeper_is_restarted_and_leaves_nothing_behind(host, kserver, cosi_sites):
    for n in cosi_sites.values():
        assert requests.get(kserver.url(n), timeout=300).status_code == 200
    old_keeper = keeper_pid(kserver)
    workers = site_pids(host)
    assert old_keeper and workers
    os.kill(old_keeper, signal.SIGKILL)
    # its workers leave (they get SIGTERM when the keeper dies) ...
    wait_for("the old workers to leave",
             lambda: not any(Path(f"/proc/{p}").exists() for p in workers.values()), timeout=60)
    # ... serve starts a new keeper, and every site answers again
    new_keeper = wait_for("a new keeper", lambda: (keeper_pid(kserver) or old_keeper) != old_keeper
                          and keeper_pid(kserver))
    for n in cosi_sites.values():
        wait_for(f"{n} answering", lambda: requests.get(kserver.url(n), timeout=300)
                 .status_code == 200, every=1)
    assert not Path(f"/proc/{old_keeper}").exists()
    assert new_keeper != old_keeper
    socks = {p.stem for p in (host.root / "run" / "sockets").iterdir()}
    assert socks == {s["name"] for s in json.loads(host("list", "--json").stdout)}
    assert kserver.proc.poll() is None


@slow
def test_a_site_that_cannot_start_gets_the_keepers_503_and_others_answer(host, kserver,
                                                                         cosi_sites):
    name = host.unique("broken")
    host("new", name, "--app", "cosi", "--empty")
    settings = host.root / name / "settings.py"
    good = settings.read_text()
    try:
        settings.write_text(good + "\nraise RuntimeError('secret detail 4711')\n")
        wait_for("the keeper to see the change", lambda: status(host)[name]["state"]
                 in ("sleeping", "failed"))
        r = requests.get(kserver.url(name), timeout=300)
        assert r.status_code == 503
        assert name in r.text and "unavailable" in r.text
        assert "4711" not in r.text and "Traceback" not in r.text
        row = status(host)[name]
        assert row["state"] == "failed" and "failed to start" in row["last_failure"]
        assert "4711" in (host.root / "logs" / "sites" / f"{name}.log").read_text()
        # the others are unaffected
        for other in cosi_sites.values():
            assert requests.get(kserver.url(other), timeout=300).status_code == 200
        # while it backs off, it still answers at once, with the same page
        assert requests.get(kserver.url(name), timeout=30).status_code == 503
    finally:
        settings.write_text(good)
    # repaired: the change ends the backoff and the site answers again
    wait_for("the repaired site", lambda: requests.get(kserver.url(name), timeout=300)
             .status_code == 200, timeout=300, every=1)
    host("rm", name, "--yes", "--no-archive")


@slow
def test_host_header_reaches_django(host, kserver, cosi_sites):
    """Django sees the browser's Host (ALLOWED_HOSTS applies), not the socket's."""
    name = cosi_sites["sqlite"]
    url = kserver.url(name)
    assert requests.get(url, headers={"Host": "localhost"}).status_code == 200
    assert requests.get(url, headers={"Host": "evil.example"}).status_code == 400


# -- a burst of first requests right after a start (issue 18) --------------------------

@slow
@pytest.mark.timeout(1500)
def test_a_burst_after_serve_starts_waits_for_the_zygote_and_is_bounded(host, kserver):
    """Thirty sleeping sites of one group get their first request at once, right after
    `serve` starts: each is answered by its own site, none starts plainly beside the
    zygote that is starting, and the keeper never starts more than it admits."""
    import concurrent.futures
    from conftest import start_serve, stop_serve
    from linohost.keeper import control
    names = [host.unique("burst") for _ in range(30)]
    for n in names:
        host("new", n, "--app", "cosi", "--front-end", "extjs", "--title", f"Burst {n}")
    stop_serve(kserver)
    seen = {"plain": 0, "zygote": 0, "plain_starts": []}
    try:
        with host_config(host, **{"keeper.max_starting": 2}):
            s = start_serve(host, kserver.port, timeout=300)
            kserver.proc = s.proc
            h = Host.open(host.root)
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    try:
                        rows = control.call(h, "status", timeout=10)["sites"]
                    except (control.NotRunning, OSError):
                        continue
                    for mode in ("plain", "zygote"):
                        seen[mode] = max(seen[mode], sum(
                            1 for r in rows if r["state"] == "starting" and r["start"] == mode))
                    time.sleep(0.05)

            def first(n):
                r = requests.get(s.url(n), timeout=300)
                return r.status_code, f"Burst {n}" in r.text

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
                answers = dict(zip(names, pool.map(first, names)))
            took = time.monotonic() - t0
            stop.set()
            sampler.join()
            print(f"\n30 first requests right after serve started: all answered in "
                  f"{took:.1f} s; at most {seen['zygote']} forks and {seen['plain']} plain "
                  f"starts at once")
            assert answers == {n: (200, True) for n in names}
            rows = status(host)
            assert {rows[n]["start"] for n in names} == {"zygote"}, \
                {n: rows[n]["plain_reason"] for n in names if rows[n]["start"] != "zygote"}
            assert seen["plain"] <= 2 and seen["zygote"] <= 8
    finally:
        if kserver.proc.poll() is None:
            stop_serve(kserver)
        kserver.proc = start_serve(host, kserver.port, timeout=300).proc
        for n in names:
            host("rm", n, "--yes", "--no-archive", check=False)
