"""`linohost run`: one manage.py command on many sites in parallel."""

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken_site(host):
    """A site whose database has lost its tables: every data command fails on it."""
    name = host.unique("broken")
    host("new", name, "--app", "cosi", "--empty")
    db = host.root / name / "default.db"
    db.write_bytes(b"")
    yield name
    # It cannot be archived (its data is gone): rm says so and removes nothing ...
    p = host("rm", name, "--yes", check=False)
    assert p.returncode == 1 and "--no-archive" in p.stderr.strip().splitlines()[-1]
    assert (host.root / name).is_dir()
    host("rm", name, "--yes", "--no-archive")        # ... unless told so


def run_logs(host):
    d = host.root / "logs" / "run"
    return sorted(d.iterdir()) if d.exists() else []


def test_run_continues_on_error_and_reports_every_site(host, cosi_sites, broken_site):
    names = [*cosi_sites.values(), broken_site]
    start = time.monotonic()
    p = host("run", *names, "-j", "2", "--json", "--", "checkdata", check=False)
    wall = time.monotonic() - start
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("linohost: error: 1 of 4 sites failed")
    rows = {r["site"]: r for r in json.loads(p.stdout)}
    assert list(rows) == names
    for name in cosi_sites.values():
        assert rows[name]["exit_code"] == 0 and rows[name]["ok"]
    bad = rows[broken_site]
    assert bad["exit_code"] != 0 and "no such table" in bad["last_line"]
    for r in rows.values():                     # every site's output is kept
        log = Path(r["log"])
        assert log.parent.parent == host.root / "logs" / "run"
        assert r["last_line"] in log.read_text()
    # two at a time: the runs overlapped
    assert wall < sum(r["duration"] for r in rows.values())


def test_run_table_and_env_selection(host, cosi_sites):
    p = host("run", "--env", "default", "--", "check", check=False)
    for name in cosi_sites.values():
        assert name in p.stdout
    assert "System check identified no issues" in p.stdout


@pytest.mark.parametrize("args", [
    ("nosuchsite", "--", "check"),
    ("--env", "nosuchenv", "--", "check"),
    ("--all",),
    ("--", "check"),
    ("--all", "-j", "0", "--", "check"),
])
def test_run_bad_input_changes_nothing(host, cosi_sites, args):
    before = run_logs(host)
    p = host("run", *args, check=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("linohost: error: ")
    assert run_logs(host) == before
