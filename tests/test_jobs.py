"""Background tasks under the keeper: a sleeping site's due Lino task (linod.SystemTask)
runs in a worker started for it, which leaves afterwards; sites' tasks never mix."""

import contextlib
import json
import os
import signal
import sqlite3
import time
from datetime import datetime

import pytest

from hoststate import site_pids, status, wait_for
from runner import host_config

pytestmark = pytest.mark.slow

#: Make *procedure* recur every N UNIT (as an operator can in Configure > System tasks).
EVERY = """
from lino.api import rt
from lino.modlib.system.choicelists import Recurrences
t = rt.models.linod.SystemTask.objects.get(procedure="{procedure}")
t.every_unit, t.every = Recurrences.{unit}, {every}
t.full_clean()
t.save()
"""

#: Ask linod to run *procedure* as soon as possible (Lino's "Run now" does this).
REQUEST = """
from django.utils import timezone
from lino.api import rt
rt.models.linod.SystemTask.objects.filter(procedure="{procedure}").update(
    requested_at=timezone.now())
"""


@pytest.fixture
def jobs_on(host, kserver):
    """Background tasks on (the session host has them off), short idle and rest times
    (11 s: Cosi's e-mail task, every 10 s, is then frequent and wakes no site)."""
    with host_config(host, **{"keeper.jobs": True, "keeper.idle_timeout": 5,
                              "keeper.min_job_interval": 11, "keeper.job_wakeups": 2}):
        time.sleep(1.5)                      # the keeper rereads its config every second
        yield
    time.sleep(1.5)


@pytest.fixture(scope="module")
def two_sites(host):
    names = [host.unique("jobs") for _ in range(2)]
    for n in names:
        host("new", n, "--app", "cosi")
    yield names
    for n in names:
        host("rm", n, "--yes", "--no-archive", check=False)


def tasks(host, name):
    """{procedure: (last_start_time, last_end_time, requested_at)} from the site's database."""
    db = host.root / name / "default.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
        return {p: (s, e, r) for p, s, e, r in c.execute(
            "SELECT procedure, last_start_time, last_end_time, requested_at "
            "FROM linod_systemtask")}


def asleep_with_known_schedule(host, name):
    """Wait till *name* sleeps after the keeper has heard of its schedule (the keeper
    wakes every site once whose schedule it never heard of, or knows it from before
    it started: then it shows the next task); return its status row."""
    def ready():
        row = status(host)[name]
        return row if row["state"] == "sleeping" and (row["job_wakes"] or row["next_job"]) \
            else None
    row = wait_for(f"{name} asleep after its first wake", ready, timeout=240)
    assert name not in site_pids(host)
    return row


def manage_shell(host, name, code):
    host("manage", name, "--", "shell", "-c", code)


def test_a_requested_task_runs_in_the_sleeping_site_only_and_it_sleeps_again(
        host, jobs_on, two_sites):
    a, b = two_sites
    asleep_with_known_schedule(host, a)
    row_b = asleep_with_known_schedule(host, b)
    # the next job the keeper knows of: a daily one (the frequent e-mail sender does not count)
    assert row_b["next_job"] and datetime.strptime(row_b["next_job"], "%Y-%m-%dT%H:%M:%S%z")
    before_a, before_b = tasks(host, a), tasks(host, b)
    wakes_a = status(host)[a]["job_wakes"]

    t0 = time.monotonic()
    manage_shell(host, a, REQUEST.format(procedure="checkdata"))
    ran = wait_for("a's checkdata to run", lambda: (
        tasks(host, a)["checkdata"][1] != before_a["checkdata"][1]
        and tasks(host, a)["checkdata"][2] is None), timeout=120)
    assert ran
    wait_for(f"{a} asleep again", lambda: status(host)[a]["state"] == "sleeping", timeout=60)
    took = time.monotonic() - t0
    print(f"requested task: from the request to the site asleep again {took:.1f} s")
    row = status(host)[a]
    assert row["pid"] is None and row["job_wakes"] == wakes_a + 1 and row["cold_starts"] == 0
    # nothing ran in the other site, and no worker of it was started
    assert tasks(host, b) == before_b
    assert status(host)[b]["job_wakes"] == row_b["job_wakes"]


def test_a_site_under_maintenance_runs_no_background_task(host, jobs_on, two_sites):
    """While its maintenance page is up (it is being restored, upgraded, or checked
    after adopt), the keeper wakes it for no task, though one was requested; once the
    page is gone, the task runs."""
    a = two_sites[0]
    asleep_with_known_schedule(host, a)
    before, wakes = tasks(host, a)["checkdata"], status(host)[a]["job_wakes"]
    page = host.root / a / "maintenance.html"
    page.write_text("<p>This site is being restored.</p>")
    try:
        manage_shell(host, a, REQUEST.format(procedure="checkdata"))   # (the keeper wakes
        time.sleep(25)                              # it within min_job_interval otherwise)
        assert status(host)[a]["job_wakes"] == wakes
        assert tasks(host, a)["checkdata"][1] == before[1]
    finally:
        page.unlink()
    wait_for("a's checkdata to run once the page is gone",
             lambda: tasks(host, a)["checkdata"][1] != before[1], timeout=120)


def test_a_restarted_keeper_wakes_no_site_whose_schedule_it_knows(host, kserver, jobs_on,
                                                                  two_sites):
    """What workers said of their sites' next task is kept (root's only): a keeper that
    starts again wakes only the sites whose task is due or whose schedule it never saw."""
    from test_keeper import keeper_pid
    for n in two_sites:
        asleep_with_known_schedule(host, n)
    kept = host.root / "run" / "keeper-schedules.json"
    assert set(two_sites) <= set(json.loads(kept.read_text()))
    assert kept.stat().st_uid == 0 and kept.stat().st_mode & 0o077 == 0
    old = keeper_pid(kserver)
    os.kill(old, signal.SIGKILL)
    wait_for("a new keeper", lambda: keeper_pid(kserver) not in (None, old), timeout=60)
    rows = wait_for("the new keeper's answer", lambda: (
        (r := status(host)) and all(r[n]["job_wakes"] is not None for n in two_sites) and r))
    assert all(rows[n]["next_job"] for n in two_sites), rows     # known from the start
    deadline = time.monotonic() + 20            # a keeper that knew nothing woke them at once
    while time.monotonic() < deadline:
        rows = status(host)
        for n in two_sites:
            assert rows[n]["job_wakes"] == 0 and rows[n]["state"] == "sleeping", rows[n]
        time.sleep(0.5)


def test_a_scheduled_task_wakes_the_sleeping_site_on_time(host, jobs_on, two_sites):
    _, b = two_sites
    asleep_with_known_schedule(host, b)
    manage_shell(host, b, EVERY.format(procedure="checkdata", unit="secondly", every=20))
    # the keeper wakes it once to learn the new schedule ...
    def ran_after_change():         # (asleep: the keeper's row has no pid; the task is
        row = status(host)[b]       # due again 20 s later, so look at no other reading)
        last = (row["state"] == "sleeping" and row["pid"] is None
                and tasks(host, b)["checkdata"][1])
        return last and last > _db_now(host, b, -30) and (last, row["job_wakes"])
    first, wakes = wait_for("checkdata run after the change", ran_after_change, timeout=120)
    # ... and then again when the task is due (20 s after its end), and it sleeps after
    t0 = time.monotonic()
    second = wait_for("checkdata run again", lambda: (
        tasks(host, b)["checkdata"][1] != first and tasks(host, b)["checkdata"][1]),
        timeout=120)
    woke_after = time.monotonic() - t0
    wait_for(f"{b} asleep again", lambda: status(host)[b]["state"] == "sleeping", timeout=60)
    row = status(host)[b]
    assert row["job_wakes"] >= wakes + 1 and row["pid"] is None
    gap = (_parse(second) - _parse(first)).total_seconds()
    print(f"scheduled task every 20 s: ran again {gap:.1f} s after its last end "
          f"({woke_after:.1f} s after we looked)")
    assert 20 <= gap < 60
    manage_shell(host, b, EVERY.format(procedure="checkdata", unit="daily", every=1))


def _parse(text):
    return datetime.fromisoformat(text)


def _db_now(host, name, delta):
    """Now plus *delta* seconds as the site's database writes times (TIME_ZONE UTC, naive)."""
    from datetime import timedelta, timezone
    return (datetime.now(timezone.utc).replace(tzinfo=None)
            + timedelta(seconds=delta)).isoformat(" ")
