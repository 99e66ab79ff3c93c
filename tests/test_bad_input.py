"""Bad input is refused with one line and exit code 2, and leaves nothing behind;
a `new` that fails or is killed half-way leaves nothing either; the host lock
serialises two commands."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import tomli_w
import tomllib

from hoststate import wait_for
from runner import LINOHOST
from leftovers import (assert_one_error_line, assert_site_absent, journals, server_leftovers,
                       snapshot)


def refused(host, *args, code=2, words=(), env=None):
    """Run a command that must be refused; check that nothing changed."""
    before = snapshot(host)
    p = host(*args, check=False, env=env)
    line = assert_one_error_line(p, code, *words)
    assert snapshot(host) == before, f"{args} left {snapshot(host) ^ before}"
    return line


# -- names -------------------------------------------------------------------

BAD_NAMES = [
    "Upper", "ALLCAPS", "a.b", "a/b", "..", ".", "", "a" * 26, "-x", "9lives", "a-b",
    "a b", "späti", "class", "match", "None",
    "django", "json", "os", "lino", "lino_cosi",        # importable modules
    "static", "media", "admin", "api", "linohost",     # reserved paths
    "under_prefix",                                    # a module of local/
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_site_name(host, name):
    # on PostgreSQL, so that a late check would leave a database behind
    line = refused(host, "new", "--app", "cosi", "--db", "postgresql", "--empty", "--", name,
                   words=["site name"])
    assert repr(name) in line or name in line
    if "/" not in name and name not in (".", ".."):
        assert server_leftovers(host.db_name(name)) == []


def test_no_entry_of_the_host_root_can_name_a_site(host):
    sites = {s["name"] for s in json.loads(host("list", "--json").stdout)}
    entries = {p.name for p in host.root.iterdir()} - sites
    own = {"local", "secrets", "envs", "registry", "run", "logs", "home"}
    assert own <= entries
    for name in sorted(entries):
        # what other tests left there may be refused as existing; the host's own by name
        refused(host, "new", name, "--app", "cosi", "--empty",
                words=["site name"] if name in own else [])


def test_longest_name_passes_the_name_check(host):
    # 25 characters is allowed: refused for another reason (unknown app), not the name
    line = refused(host, "new", "a" * 25, "--app", "nosuchapp", "--empty")
    assert "unknown app" in line


def test_the_directory_linohost_runs_in_shadows_nothing(host, tmp_path):
    """`python -m linohost` puts its working directory on its own path: a folder
    there of the site's name is no module the site would import."""
    name = host.unique("cwd")
    (tmp_path / name).mkdir()
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    p = subprocess.run([*LINOHOST, "new", name, "--app", "nosuchapp", "--empty"], cwd=tmp_path,
                       env=env, capture_output=True, text=True)
    assert_one_error_line(p, 2, "unknown app")       # not refused for its name
    assert_site_absent(host, name)


# -- other input of `new` ----------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["--app", "nosuchapp"], ["unknown app", "nosuchapp"]),
    (["--app", "lino_nosuch.lib.nosuch.settings"], ["not installed", "lino_nosuch"]),
    (["--app", "lino_cosi.lib.nosuch.settings"], ["not installed", "lino_cosi.lib.nosuch"]),
    (["--app", ""], ["unknown app"]),
    (["--app", "cosi", "--env", "nosuchenv"], ["no environment", "nosuchenv"]),
    (["--app", "cosi", "--env", "Bad/Env"], ["environment"]),
    (["--app", "cosi", "--languages", "english"], ["language", "english"]),
    (["--app", "cosi", "--languages", "en,en"], ["duplicate"]),
    (["--app", "cosi", "--domain", "not a host!"], ["domain"]),
    (["--app", "cosi", "--db", "oracle"], ["oracle"]),
    # Lino's only other front end cannot be the main one (research/prefix-frontends.md)
    (["--app", "cosi", "--front-end", "bootstrap5"], ["bootstrap5"]),
    ([], ["--app"]),
])
def test_bad_options_of_new(host, args, words):
    name = host.unique("bad")
    refused(host, "new", name, "--db", "postgresql", "--empty", *args, words=words)
    assert_site_absent(host, name)


@pytest.mark.parametrize("command", [["show"], ["manage", "--", "check"], ["rm", "--yes"],
                                     ["backup"]])
def test_unknown_site(host, command):
    refused(host, command[0], "nosuchsite", *command[1:], words=["nosuchsite"])


@pytest.fixture(scope="module")
def cheap_site(host):
    name = host.unique("dup")
    host("new", name, "--app", "cosi", "--empty")
    yield name
    host("rm", name, "--yes", "--no-archive")


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mysql"])
def test_duplicate_site(host, cheap_site, db):
    settings = (host.root / cheap_site / "settings.py").read_bytes()
    refused(host, "new", cheap_site, "--app", "noi", "--db", db, "--empty",
            words=[cheap_site, "already exists"])
    # the first site is untouched
    assert (host.root / cheap_site / "settings.py").read_bytes() == settings
    assert (host.root / "registry" / f"{cheap_site}.toml").exists()
    assert server_leftovers(host.db_name(cheap_site)) == []
    p = host("manage", cheap_site, "--", "check")
    assert "no issues" in p.stdout + p.stderr


def archives(host):
    from linohost.apply.backup import backup_dir
    from linohost.model.host import Host
    d = backup_dir(Host.open(host.root))
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@pytest.mark.slow
def test_clone_to_an_existing_name_changes_nothing(host, cheap_site):
    """Refused before anything is made, the source's archive included; the advice
    names what exists (clone has no --force)."""
    before = archives(host)
    line = refused(host, "clone", cheap_site, cheap_site, words=[cheap_site, "exists"])
    assert "--force" not in line
    refused(host, "clone", cheap_site, "Bad/Name", words=["site name"])
    assert archives(host) == before


def test_backup_takes_what_its_advice_names(host):
    line = refused(host, "backup", words=["--all", "--env NAME"])
    refused(host, "backup", "--env", "nosuchenv", words=["nosuchenv"])   # an option it has
    assert "--env" in line


def test_admin_options_are_for_empty_sites(host):
    name = host.unique("adm")
    refused(host, "new", name, "--app", "cosi", "--admin", "boss", words=["--empty"])
    refused(host, "new", name, "--app", "cosi", "--empty", "--admin", "bad name",
            words=["user name"])
    assert_site_absent(host, name)


def test_existing_database_user_is_refused_and_kept(host):
    """A PostgreSQL role of the site's database name that linohost did not make
    is not reused, and not dropped by the rollback either."""
    name = host.unique("taken")
    db = host.db_name(name)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                         autocommit=True) as c:
        c.execute(f'CREATE ROLE "{db}"')
    try:
        refused(host, "new", name, "--app", "cosi", "--db", "postgresql", "--empty",
                words=[db, "already exists", "not made by linohost"])
        assert server_leftovers(db) == [f"postgresql role {db}"]
    finally:
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres",
                             autocommit=True) as c:
            c.execute(f'DROP ROLE IF EXISTS "{db}"')
    assert_site_absent(host, name)


# -- the host root -------------------------------------------------------------

@pytest.mark.parametrize("command", [["new", "site1", "--app", "cosi"], ["list"],
                                     ["env", "create", "e1"], ["show", "site1"]])
def test_uninitialised_root(command):
    from runner import linohost
    with tempfile.TemporaryDirectory() as d:
        for root in (Path(d), Path(d) / "missing"):
            p = linohost(root, *command, check=False)
            assert_one_error_line(p, 2, "not a linohost root", str(root))
            assert list(Path(d).iterdir()) == [], "the command wrote into an uninitialised root"


@contextmanager
def edited_config(host, edit):
    """The host's linohost.toml changed by *edit(text) -> text*, restored afterwards."""
    path = host.root / "linohost.toml"
    original = path.read_bytes()
    try:
        path.write_text(edit(original.decode()))
        yield path
    finally:
        path.write_bytes(original)


def set_key(table, key, value):
    def edit(text):
        data = tomllib.loads(text)
        data.setdefault(table, {})[key] = value
        return tomli_w.dumps(data)
    return edit


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("engine,label", [("postgresql", "PostgreSQL"), ("mysql", "MariaDB")])
def test_unreachable_database_server(host, engine, label):
    port = free_port()
    name = host.unique("unreach")
    with edited_config(host, set_key(engine, "port", port)):
        refused(host, "new", name, "--app", "cosi", "--db", engine, "--empty",
                words=[label, f"127.0.0.1:{port}"])
    assert_site_absent(host, name)


def add_text(extra):
    return lambda text: text + extra


def prepend(extra):
    """Top-level keys go before the first table."""
    return lambda text: re.sub(r"^\[", lambda m: extra + "\n[", text, count=1, flags=re.M)


CORRUPT = [
    # (edit of the text, key the message names (None: none), text of the line it names)
    (add_text('\n[postgresql]\nport = "fivefourthreetwo"\n'), "postgresql.port", "port = "),
    (add_text('\n[mysql]\n\nadmin_user = "root"\nprot = 3306\n'), "mysql.prot", "prot = "),
    (lambda t: re.sub(r'^mode = .*$', 'mode = "sideways"', t, flags=re.M), "mode", "mode = "),
    (add_text("\nnonsense_key = 1\n"), "nonsense_key", "nonsense_key = "),
    (set_key("apache", "port", 0), "apache.port", "port = 0"),
    (set_key("backup", "keep_daily", -1), "backup.keep_daily", "keep_daily = "),
    (add_text("\nthis is not toml\n"), None, "this is not toml"),
    (add_text('\n[apache]\nthreads = 2\n'), None, "[apache]"),       # a table twice
    (set_key("apache", "port", 65536), "apache.port", "port = 65536"),
    # the line of a key written as a dotted key, in an inline table, under a quoted
    # table name, or as an array of tables
    (prepend('postgresql.port = "x"\n'), "postgresql.port", "postgresql.port = "),
    (prepend('mysql = {port = "x"}\n'), "mysql.port", "mysql = "),
    (add_text('\n[ "backup" ]\nkeep_weekly = "x"\n'), "backup.keep_weekly", "keep_weekly"),
    (add_text('\n[[postgresql]]\nport = 1\n'), "postgresql", "[[postgresql]]"),
    # a key given twice: the message names it
    (add_text('\n[mail]\nport = 25\nport = 26\n'), "mail.port", "port = 26"),
]


@pytest.mark.parametrize("edit,key,text", CORRUPT)
def test_corrupt_host_config(host, edit, key, text):
    name = host.unique("corrupt")
    with edited_config(host, edit) as path:
        lines = path.read_text().splitlines()
        [line] = [i for i, s in enumerate(lines, 1) if s.startswith(text)][-1:]
        corrupt = path.read_bytes()
        for command in (["new", name, "--app", "cosi", "--db", "postgresql", "--empty"],
                        ["list"], ["show", "nosuchsite"], ["init", "--secret", "shared"]):
            refused(host, *command, words=[f"{path}:{line}:"] + ([key] if key else []))
            assert path.read_bytes() == corrupt, f"{command} rewrote the corrupt file"
    assert_site_absent(host, name)


# -- failures half-way -----------------------------------------------------------

BOOM_SETTINGS = '''
"""A Lino app whose demo data fails to load (a linohost test)."""
from lino_cosi.lib.cosi.settings import *  # noqa


class Site(Site):  # noqa
    demo_fixtures = ["linohost_boom"]
'''

BOOM_FIXTURE = '''
def objects():
    raise RuntimeError("the demo data of linohost_boomapp is broken on purpose")
    yield
'''


@pytest.fixture
def boom_app(host):
    """An importable settings module in environment `default` whose demo data
    loading raises."""
    [site_packages] = (host.root / "envs" / "default").glob("lib/python3*/site-packages")
    pkg = site_packages / "linohost_boomapp"
    (pkg / "fixtures").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text(BOOM_SETTINGS)
    (pkg / "fixtures" / "linohost_boom.py").write_text(BOOM_FIXTURE)
    yield "linohost_boomapp.settings"
    import shutil
    shutil.rmtree(pkg)


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mysql"])
def test_failure_half_way_rolls_back_everything(host, boom_app, db):
    name = host.unique(f"boom{db[:2]}")
    before = snapshot(host)
    p = host("new", name, "--app", boom_app, "--db", db, check=False)
    assert p.returncode == 1, p.stderr
    assert "initialising" in p.stderr           # it got that far: the database existed
    assert "rolling back" in p.stderr
    last = p.stderr.splitlines()[-1]
    assert last.startswith("linohost: error: ") and "broken on purpose" in last, p.stderr
    assert snapshot(host) == before, snapshot(host) ^ before
    assert_site_absent(host, name)


@pytest.mark.slow
@pytest.mark.parametrize("db,data", [("postgresql", "--demo"), ("mysql", "--empty")])
def test_killed_new_is_repaired_by_the_next_command(host, db, data):
    """Killed while Django fills the database (demo data, or migrations only)."""
    name = host.unique(f"killed{db[:2]}")
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    before = snapshot(host)
    proc = subprocess.Popen([*LINOHOST, "new", name, "--app", "cosi", "--db", db, data],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "initialising" in line:
                break
        assert any("initialising" in s for s in seen), "".join(seen)
        # half-way indeed: directory, password, database and journal exist
        assert (host.root / name).is_dir()
        assert (host.root / "secrets" / f"db-{name}").exists()
        user = "role" if db == "postgresql" else "user"
        dbn = host.db_name(name)
        assert server_leftovers(dbn) == [f"{db} database {dbn}", f"{db} {user} {dbn}"]
        assert journals(host) == [f"new-{name}.json"]
        wait_for("a manage.py child (to kill it while Django runs in the site)",
                 lambda: processes_in(host.root / name), timeout=30, every=0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(60)
    time.sleep(0.5)            # the killed linohost's children die with it
    assert processes_in(host.root / name) == []
    p = host("list")
    assert "repairing an interrupted new" in p.stderr
    assert name not in p.stdout
    assert snapshot(host) == before, snapshot(host) ^ before
    assert_site_absent(host, name)


def processes_in(directory):
    """The processes whose working directory is *directory* (or was, if deleted)."""
    out = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            target = os.readlink(cwd)
        except OSError:
            continue
        if target.removesuffix(" (deleted)") == str(directory):
            out.append(int(cwd.parent.name))
    return out


# -- the lock ----------------------------------------------------------------------

def test_a_command_waiting_for_the_lock_leaves_the_holders_journal_alone(bare):
    """Every command repairs what interrupted ones left, but only under the lock: a
    journal write in progress (its temp file) looks like one cut short."""
    from linohost.apply.lock import host_lock
    from linohost.model.host import Host
    journal = bare.root / "run" / "journal"
    journal.mkdir(parents=True, exist_ok=True)
    writing = journal / ".new-x.json.abc123.tmp"
    with host_lock(Host.open(bare.root)):
        writing.write_text("{")
        bare("list")
        assert writing.exists()
    bare("list")                        # the lock is free: this one tidies
    assert not writing.exists()


@pytest.mark.slow
def test_two_new_at_once_are_serialised(host):
    names = [host.unique("conc"), host.unique("conc")]
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    events = {n: [] for n in names}     # (monotonic time, stderr line)

    def start(name):
        p = subprocess.Popen([*LINOHOST, "new", name, "--app", "cosi", "--empty"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)

        def read():
            for line in p.stderr:
                events[name].append((time.monotonic(), line.rstrip("\n")))
        t = threading.Thread(target=read, daemon=True)
        t.start()
        return p, t

    procs = [start(n) for n in names]
    try:
        for (p, t), n in zip(procs, names):
            code = p.wait(600)
            t.join(10)
            assert code == 0, "\n".join(f"{n}: {line}" for _, line in events[n])
        text = {n: "\n".join(line for _, line in events[n]) for n in names}
        waited = [n for n in names if "another linohost command is changing this host: waiting"
                  in text[n]]
        assert len(waited) == 1, text
        first, second = [n for n in names if n not in waited] + waited
        # the second began its work only after the first finished it
        first_done = max(t for t, line in events[first] if "initialising" in line)
        second_work = min(t for t, line in events[second] if "initialising" in line)
        assert second_work > first_done
        # (The first says "ready" only after giving the lock up, once a running
        # `linohost serve` routes its site: the second may have begun by then.)
        listed = host("list").stdout
        assert all(n in listed for n in names)
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
        for n in names:
            host("rm", n, "--yes", "--no-archive", check=False)
    for n in names:
        assert_site_absent(host, n)
