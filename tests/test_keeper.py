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

from hoststate import site_pids, status, wait_for, wait_zygotes_ready
from runner import host_config
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
    """Restart *name* the documented way (wsgi.py touched) and wait till the keeper saw
    it (a site asleep already seems asleep before: a worker started meanwhile would
    then be restarted under the test) and the site sleeps."""
    log = host.root / "logs" / "keeper.log"
    line = f"keeper: {name}: changed\n"
    seen = log.read_text().count(line)
    os.utime(host.root / name / "apache" / "wsgi.py")
    wait_for(f"the keeper to see {name} changed", lambda: log.read_text().count(line) > seen)
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
    socks = {p.stem for p in (host.root / "run" / "sockets").iterdir()} - {"_linohost"}
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
        assert row["failed_starts"] >= 1 and row["last_start"] is None
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
    row = status(host)[name]        # the failures are counted on, the start is dated
    assert row["failed_starts"] >= 1 and row["last_failure"]
    assert row["last_start"][:10] == time.strftime("%Y-%m-%d")
    host("rm", name, "--yes", "--no-archive")


@slow
def test_host_header_reaches_django(host, kserver, cosi_sites):
    """Django sees the browser's Host (ALLOWED_HOSTS applies), not the socket's."""
    name = cosi_sites["sqlite"]
    url = kserver.url(name)
    assert requests.get(url, headers={"Host": "localhost"}).status_code == 200
    assert requests.get(url, headers={"Host": "evil.example"}).status_code == 400


# -- a burst of first requests right after a start (issue 18) --------------------------

@pytest.fixture(scope="module")
def burst_sites(host):
    """Thirty sleeping Cosi sites of one group (each page names its site)."""
    names = [host.unique("burst") for _ in range(30)]
    for n in names:
        host("new", n, "--app", "cosi", "--front-end", "extjs", "--title", f"Burst {n}")
    yield names
    for n in names:
        host("rm", n, "--yes", "--no-archive", check=False)


@contextlib.contextmanager
def restarted_serve(host, kserver, **keys):
    """`serve` stopped and started again with *keys* in the host config (a fresh keeper
    whose sites all sleep); afterwards as before."""
    from serving import start_serve, stop_serve
    stop_serve(kserver)
    try:
        with host_config(host, **keys):
            s = start_serve(host, kserver.port, timeout=300)
            kserver.proc = s.proc
            yield s
    finally:
        if kserver.proc.poll() is None:
            stop_serve(kserver)
        kserver.proc = start_serve(host, kserver.port, timeout=300).proc


def burst(host, s, names, count):
    """Every site's first request at once; return ({site: (status, its own page)},
    seconds, the most status rows that *count* held at once)."""
    import concurrent.futures
    from linohost.keeper import control
    h = Host.open(host.root)
    stop, most = threading.Event(), []

    def sample():
        while not stop.is_set():
            try:
                rows = control.call(h, "status", timeout=10)["sites"]
            except (control.NotRunning, OSError):
                continue
            most.append(count(rows))
            time.sleep(0.05)

    def first(n):
        r = requests.get(s.url(n), timeout=300)
        return r.status_code, f"Burst {n}" in r.text

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            answers = dict(zip(names, pool.map(first, names)))
    finally:
        stop.set()
        sampler.join()
    return answers, time.monotonic() - t0, max(most, default=None)


@slow
@pytest.mark.timeout(1500)
def test_a_burst_after_serve_starts_waits_for_the_zygote_and_is_bounded(host, kserver,
                                                                         burst_sites):
    """Thirty sleeping sites of one group get their first request at once, right after
    `serve` starts: each is answered by its own site, none starts plainly beside the
    zygote that is starting, and the keeper never starts more than it admits."""
    names = burst_sites
    with restarted_serve(host, kserver, **{"keeper.max_starting": 2}) as s:
        answers, took, most = burst(host, s, names, lambda rows: tuple(
            sum(1 for r in rows if r["state"] == "starting" and r["start"] == mode)
            for mode in ("plain", "zygote")))
        print(f"\n30 first requests right after serve started: all answered in "
              f"{took:.1f} s; at most {most[1]} forks and {most[0]} plain starts at once")
        assert answers == {n: (200, True) for n in names}
        rows = status(host)
        assert {rows[n]["start"] for n in names} == {"zygote"}, \
            {n: rows[n]["plain_reason"] for n in names if rows[n]["start"] != "zygote"}
        assert most[0] <= 2 and most[1] <= 8


@slow
@pytest.mark.timeout(1500)
def test_a_burst_beyond_max_workers_lets_the_idlest_go_and_memory_is_kept(host, kserver,
                                                                          burst_sites):
    """With room for five workers, thirty first requests at once are all answered by
    their own sites while the least recently used workers leave; with no memory to
    spare and no worker left to go, a site answers the keeper's 503 with Retry-After,
    counted in status, and serves again once memory is there."""
    names = burst_sites
    with restarted_serve(host, kserver, **{"keeper.max_workers": 5}) as s:
        answers, took, most = burst(host, s, names, lambda rows: sum(
            1 for r in rows if r["state"] in ("starting", "running")))
        print(f"\n30 first requests with keeper.max_workers = 5: all answered in "
              f"{took:.1f} s; at most {most} workers at once")
        assert answers == {n: (200, True) for n in names}
        assert most <= 5
        log = (host.root / "logs" / "keeper.log").read_text()
        assert "let go (least recently used)" in log
        rows = status(host)
        asleep = [n for n in names if rows[n]["state"] == "sleeping"]
        assert len(asleep) >= 25
        with host_config(host, **{"keeper.min_free_memory": 10 ** 8}):   # 100 TiB
            time.sleep(2)                           # the keeper reads its config
            r = requests.get(s.url(asleep[0]), timeout=300)
            assert r.status_code == 503 and r.headers["Retry-After"] == "30", r.status_code
            assert asleep[0] in r.text and "Traceback" not in r.text
            rows = status(host)
            assert rows[asleep[0]]["refused"] >= 1
            assert not [n for n in names if rows[n]["state"] in ("starting", "running")]
        time.sleep(2)
        r = requests.get(s.url(asleep[0]), timeout=300)
        assert r.status_code == 200 and f"Burst {asleep[0]}" in r.text


#: A site's own URL whose worker then holds 400 MiB (a cache, a big report's data).
HOLD = '''
from django.http import HttpResponse
from django.urls import re_path
from lino.core.urls import urlpatterns

HELD = []


def hold(request):
    if not HELD:
        HELD.append(b"x" * (400 << 20))
    return HttpResponse("held")


urlpatterns = [re_path(r"^(?:.*/)?hold/$", hold), *urlpatterns]
'''


@contextlib.contextmanager
def holding(host, names):
    """*names* get the URL above (in their own part of settings.py); as before after."""
    saved = {}
    try:
        for n in names:
            project = host.root / n
            saved[n] = (project / "settings.py").read_text()
            (project / "hold.py").write_text(HOLD)
            os.chmod(project / "hold.py", 0o644)
            (project / "settings.py").write_text(saved[n] + f'ROOT_URLCONF = "{n}.hold"\n')
        yield
    finally:
        for n, text in saved.items():
            (host.root / n / "settings.py").write_text(text)
            (host.root / n / "hold.py").unlink(missing_ok=True)


@slow
@pytest.mark.timeout(1500)
def test_short_of_memory_the_least_recently_used_workers_leave(host, kserver, burst_sites):
    """keeper.min_free_memory alone (no max_workers) bounds the workers: with room for
    about five workers that hold 400 MiB each, ten sites hit at once all answer (some
    after waiting, none with a 503: there is always a worker to let go); they grow
    after their start, so the idlest then leave until the floor holds again; woken one
    after another, the workers let go are always the least recently used. (The bounds
    allow for what other processes of this shared machine take and give back.)"""
    import concurrent.futures
    from linohost import processes
    names = burst_sites[-10:]

    def hold(n):
        r = requests.get(s.url(n, "hold/"), timeout=300)
        return r.status_code, r.text

    def awake():
        def settled():
            rows = status(host)
            running = [rows[n]["state"] == "running" for n in names]
            return sum(running) <= 8 and not [n for n, r in rows.items() if r["state"] in (
                "stopping", "starting")] and (running, rows)
        return wait_for("the memory floor to hold again", settled, timeout=90,
                        detail=lambda: {n: r["state"] for n, r in status(host).items()})

    with holding(host, names), restarted_serve(host, kserver) as s:
        wait_zygotes_ready(host)
        floor_mib = processes.available_kib() // 1024 - 5 * 440
        with host_config(host, **{"keeper.min_free_memory": floor_mib}):
            time.sleep(2)                           # the keeper reads its config
            with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
                answers = dict(zip(names, pool.map(hold, names)))
            assert answers == {n: (200, "held") for n in names}
            at_once, rows = awake()
            for n in names:
                assert hold(n) == (200, "held"), n
            in_turn, rows = awake()
        print(f"\n10 sites holding 400 MiB each, room for about 5: {sum(at_once)} awake after "
              f"a burst; woken in turn: {in_turn}")
        assert "let go (least recently used)" in (host.root / "logs" / "keeper.log").read_text()
        assert 1 <= sum(at_once) <= 8 and 1 <= sum(in_turn) <= 8, (at_once, in_turn)
        assert in_turn == sorted(in_turn), f"a worker left before an idler one: {in_turn}"
        assert not any(rows[n]["refused"] for n in names)


@slow
def test_an_orphan_of_a_site_process_is_collected(host, kserver, cosi_sites):
    """The keeper is a subreaper: a process that a warm command leaves behind becomes the
    keeper's child when the command ends, and is collected when it ends (no zombie)."""
    name = cosi_sites["sqlite"]
    wait_zygotes_ready(host)
    out = host("manage", name, "--", "shell", "-c",
               "import subprocess; print('ORPHAN', subprocess.Popen(['sleep', '2']).pid)").stdout
    orphan = int(out.split("ORPHAN")[1].split()[0])
    log = host.root / "logs" / "keeper.log"
    wait_for("the orphan to be collected", lambda: f"collected process {orphan} (exit code 0)"
             in log.read_text(), timeout=30)
    assert not Path(f"/proc/{orphan}").exists()
