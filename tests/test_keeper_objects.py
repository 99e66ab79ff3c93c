"""The keeper's parts without a keeper: the transition tables of sites and zygotes (every
allowed and every refused change) and the control interface's dispatch table."""

import itertools
import types
from pathlib import Path

import pytest

from linohost.keeper import states
from linohost.keeper.rpc import ControlInterface

TABLES = {"site": (states.STATES, states.ALLOWED),
          "zygote": (states.ZYGOTE_STATES, states.ZYGOTE_ALLOWED)}


def transitions(kind, allowed):
    names, table = TABLES[kind]
    return [(kind, old, new) for old, new in itertools.product(names, repeat=2)
            if (new in table[old]) == allowed]


@pytest.mark.parametrize("kind", TABLES)
def test_the_table_names_every_state_and_only_known_states(kind):
    names, table = TABLES[kind]
    assert set(table) == set(names)
    assert all(targets <= set(names) for targets in table.values())


def test_the_tables_allow_what_the_keeper_does():
    assert len(transitions("site", True)) == 11 and len(transitions("site", False)) == 14
    assert len(transitions("zygote", True)) == 8 and len(transitions("zygote", False)) == 8


@pytest.mark.parametrize("kind,old,new", transitions("site", True) + transitions("zygote", True))
def test_an_allowed_transition_passes(kind, old, new):
    states.check(old, new, TABLES[kind][1])


@pytest.mark.parametrize("kind,old,new", transitions("site", False) + transitions("zygote", False))
def test_a_refused_transition_raises(kind, old, new):
    with pytest.raises(states.BadTransition, match=f"{old} -> {new}"):
        states.check(old, new, TABLES[kind][1])


def test_backoff_doubles_up_to_its_cap():
    assert [states.backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [states.backoff(n, cap=300, first=10) for n in (1, 2, 5, 6)] == [10, 20, 160, 300]


def keeper():
    """What the control interface reads of a keeper, with no socket and no process."""
    k = types.SimpleNamespace(slots={}, pool=types.SimpleNamespace(zygotes={}), stopping=False, reconciled=0,
                              restarted=[], admission=types.SimpleNamespace(queue={}),
                              fence=types.SimpleNamespace(kind="rlimits"))
    k.reconcile = lambda: setattr(k, "reconciled", k.reconciled + 1)
    k.restart = k.restarted.append
    k.wakeups = types.SimpleNamespace(save=lambda: None)
    return k


def test_every_command_of_the_dispatch_table_is_a_method():
    for cmd, method in ControlInterface.COMMANDS.items():
        assert callable(getattr(ControlInterface, method)), cmd


def test_the_control_interface_dispatches_and_refuses_unknown_commands():
    k = keeper()
    c = ControlInterface(k)
    assert c.dispatch({"cmd": "status"})["sites"] == []
    assert c.dispatch({"cmd": "reload"}) == {"ok": True, "sites": []} and k.reconciled == 1
    assert c.dispatch({"cmd": "restart", "site": "nosuch"}) == {
        "ok": False, "error": "no site named 'nosuch'"}
    assert c.dispatch({"cmd": "jobs", "site": "nosuch"})["ok"] is False
    assert c.dispatch({"cmd": "frobnicate"}) == {
        "ok": False, "error": "unknown command 'frobnicate'"}
    assert c.dispatch({})["ok"] is False
    assert c.dispatch({"cmd": ["status"]})["ok"] is False
    assert not k.stopping
    assert c.dispatch({"cmd": "stop"}) == {"ok": True} and k.stopping


#: Run in a process of its own: waitpid(-1) there reaps only its own children.
REAPER = r"""
import json, logging, os, subprocess, time, types
from linohost.keeper.daemon import Keeper
from linohost.keeper.zygotes import set_child_subreaper

set_child_subreaper()
said = []
handler = logging.Handler()
handler.emit = lambda record: said.append(record.getMessage())
logging.getLogger("linohost.keeper").addHandler(handler)
logging.getLogger("linohost.keeper").setLevel(logging.INFO)
procs = {name: subprocess.Popen(["sh", "-c", f"exit {code}"])
         for name, code in (("worker", 3), ("zygote", 4), ("command", 5), ("backup", 6),
                            ("stranger", 7))}
# A grandchild left behind: its parent ends at once, so it becomes ours (a subreaper's).
orphan = int(subprocess.run(["sh", "-c", "sleep 0.3 & echo $!"], capture_output=True,
                            text=True).stdout)
time.sleep(1)
ns = types.SimpleNamespace
k = ns(slots={"site": ns(proc=procs["worker"])},
       pool=ns(zygotes={"group": ns(proc=procs["zygote"])}),
       control=ns(commands={1: ns(proc=procs["command"])}),
       actions=ns(processes=lambda: [procs["backup"]]))
Keeper.reap_children(k)
print(json.dumps({"codes": {n: p.returncode for n, p in procs.items()},
                  "pids": {n: p.pid for n, p in procs.items()}, "orphan": orphan,
                  "said": said, "left": [p for p in (*[p.pid for p in procs.values()], orphan)
                                         if os.path.exists(f"/proc/{p}")]}))
"""


def test_the_reaper_routes_every_child_to_its_owner_and_logs_the_others():
    import json
    import subprocess
    import sys
    out = json.loads(subprocess.run([sys.executable, "-c", REAPER], capture_output=True,
                                    text=True, check=True, timeout=60).stdout)
    assert out["codes"] == {"worker": 3, "zygote": 4, "command": 5, "backup": 6,
                            "stranger": None}
    pid = out["pids"]["stranger"]
    assert f"collected process {pid} (exit code 7): an orphan" in out["said"]
    assert f"collected process {out['orphan']} (exit code 0): an orphan" in out["said"]
    assert len(out["said"]) == 2 and out["left"] == []       # no zombie left


def test_a_status_line_is_said_and_heard_back():
    from linohost.keeper import protocol
    line = protocol.say(protocol.VARIANT, "abc", '{"t":[1,2]}')
    assert line == 'variant abc {"t":[1,2]}\n'
    assert protocol.heard(line.encode()) == (protocol.VARIANT, 'abc {"t":[1,2]}')
    assert protocol.heard(protocol.say(protocol.READY)) == ("ready", "")


def test_what_a_worker_says_reaches_its_slot_and_a_garbled_line_is_logged(caplog):
    """Lines split across reads are put together; each word updates the slot; a line the
    keeper cannot read is logged and the lines after it still count."""
    import os
    import time
    from linohost.keeper import protocol
    from linohost.keeper.reports import Reports
    ns = types.SimpleNamespace
    learned, saved, moved, measured, handed = [], [], [], [], []
    k = ns(_to=lambda slot, state: moved.append(state) or setattr(slot, "state", state),
           admission=ns(ready=measured.append), wakeups=ns(save=lambda: saved.append(1)),
           pool=ns(learn_variant=lambda *a: learned.append(a)), _unregister=lambda f: None,
           host=ns(site_dir=lambda name: Path("/sites") / name),
           porch=ns(hand_over=lambda name, path: handed.append((name, path))))
    r, w = os.pipe()
    os.set_blocking(r, False)
    slot = ns(name="s1", group="g", status=r, buffer=b"", state=states.STARTING,
              started_mono=time.monotonic(), for_jobs=False, cold_starts=0, job_wakes=0,
              failures=2, tried={"z"}, start_mode="zygote", plain_reason="x",
              proc=ns(pid=1), requests=0, last_request=None, websockets=None, messages=0,
              next_job=None, jobs_known=False, done=None)
    reports = Reports(k)
    said = "".join([protocol.say(protocol.READY), protocol.say(protocol.STATS, 3, 1700000000.5),
                    "stats garbled\n", protocol.say(protocol.LIVE, 2, 9),
                    protocol.say(protocol.NEXT_JOB, 1700000100),
                    protocol.say(protocol.VARIANT, "d1", "{}"),
                    protocol.say(protocol.DONE, 0, 2, 0, 1, 0, 0.75, 2, 0, 0, 1, 0, 0, 0, 0, 0)
                    ]).encode()
    os.write(w, said[:3])
    reports.read(slot)
    assert slot.state == states.STARTING and slot.buffer == said[:3]
    os.write(w, said[3:])
    os.close(w)
    with caplog.at_level("WARNING", "linohost.keeper"):
        reports.read_to_end(slot)
    assert moved == [states.RUNNING] and measured == [slot] and slot.cold_starts == 1
    assert (slot.failures, slot.tried, slot.plain_reason) == (0, set(), None)
    assert (slot.requests, slot.last_request) == (3, 1700000000.5)
    assert (slot.websockets, slot.messages) == (2, 9)
    assert handed == [("s1", Path("/sites/s1/apache/ws.sock"))]    # to its worker now
    assert (slot.next_job, slot.jobs_known, saved) == (1700000100.0, True, [1])
    assert learned == [("s1", "g", "d1 {}")]
    assert (slot.done.classes, slot.done.seconds) == ([0, 2, 0, 1, 0], 0.75)
    assert slot.status is None
    assert "cannot read: b'stats garbled'" in caplog.text
