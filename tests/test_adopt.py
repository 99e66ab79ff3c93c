"""`linohost adopt` of a seed-layout host (Lino's mass-hosting page): two Cosi
projects sharing one djangosite_local.py, populated by their own `manage.py prep`.
Adopted: the same rows per table, its own settings in effect and below the marker,
the source untouched; bad input changes nothing; a kill half-way is repaired."""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import tomllib
from pathlib import Path

import psycopg
import pymysql
import pytest

from runner import kill_at
from linohost.model.env import Env
from linohost.render import site as render_site

pytestmark = pytest.mark.slow

MANAGE = '''#!/usr/bin/env python
if __name__ == "__main__":
    import os, sys
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
'''

SHARED_HOOK = '''# The host's shared local settings (Lino's mass-hosting layout).
def setup_site(self):
    pass
'''

SETTINGS = '''from lino_cosi.lib.cosi.settings import *


class Site(Site):
    title = {title!r}
    languages = "en de"
    is_demo_site = False
    demo_fixtures = ["std", "minimal_ledger"]

    def get_installed_plugins(self):
        yield super().get_installed_plugins()
        yield "lino_xl.lib.addresses"           # one Cosi does not have

    def get_plugin_configs(self):
        yield super().get_plugin_configs()
        yield ("countries", "country_code", "DE")


SITE = Site(globals())
DEBUG = False
SECRET_KEY = "seed-secret-{title}"
EMAIL_SUBJECT_PREFIX = "[seed] "
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                          "NAME": str(SITE.site_dir / "default.db")}}}}
'''

ADD_ROW = ("from lino.api import rt; "
           "rt.models.countries.Country(isocode='XA', name='Adoptland').save(); "
           "u = rt.models.users.User(username='alice', "
           "user_type=rt.models.users.UserTypes.admin); u.set_password('pw'); u.save()")
#: A row of the plugin of its own (lino_xl.lib.addresses).
ADD_ADDRESS = ("from lino.api import rt; p = rt.models.contacts.Company(name='Adopt AG'); "
               "p.full_clean(); p.save(); "
               "a = rt.models.addresses.Address(partner=p, street='Adoptionsweg 1'); "
               "a.full_clean(); a.save()")
#: As a linod that has just run a task every second: its status tells the next run
#: relative to now ("Scheduled to run at … (3 seconds ago)"), otherwise at each request.
TASK_RAN = ("from django.utils import timezone; from lino.api import rt; "
            "from lino.modlib.system.choicelists import Recurrences; "
            "from lino.modlib.linod.choicelists import Procedures; "
            "t = rt.models.linod.SystemTask(procedure=Procedures.checkdata, name='often', "
            "every_unit=Recurrences.secondly, every=1); "
            "t.last_start_time = t.last_end_time = timezone.now(); t.full_clean(); t.save()")
EFFECT = ("from django.conf import settings as s; print('OWN', s.SITE.is_demo_site, "
          "s.SITE.plugins.countries.country_code, ' '.join(l.django_code for l in "
          "s.SITE.languages), s.EMAIL_SUBJECT_PREFIX.strip(), "
          "rt.models.countries.Country.objects.filter(isocode='XA').count(), "
          "rt.models.addresses.Address.objects.filter(street='Adoptionsweg 1').count())")


def rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def tree_hash(d, skip=None):
    """A hash of the names and bytes in directory *d* (but of paths starting with *skip*)."""
    h = hashlib.sha256()
    for p in sorted(Path(d).rglob("*")):
        if skip and str(p).startswith(str(skip)):
            continue
        h.update(str(p.relative_to(d)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def names(host, **kw):
    return {s["name"] for s in json.loads(host("list", "--json", **kw).stdout)}


@pytest.fixture(scope="module")
def seed(host):
    """/tmp/…/seed: djangosite_local.py, env -> the session's virtualenv, site1, site2."""
    base = Path(tempfile.mkdtemp(prefix="linohost-seed-"))
    try:                        # (a failed prep leaves no directory behind)
        base.chmod(0o755)
        env = Env.load(host.root / "envs" / "default" / Env.FILENAME)
        (base / "env").symlink_to(env.path)
        (base / "djangosite_local.py").write_text(SHARED_HOOK)
        for n in ("site1", "site2"):
            d = base / n
            (d / "config").mkdir(parents=True)     # media/ after prep (which moves it away)
            (d / "manage.py").write_text(MANAGE)
            (d / "settings.py").write_text(SETTINGS.format(title=n))
        py = env.bin_python
        run_env = {**os.environ, "PYTHONPATH": str(base)}
        for args in (["prep", "--noinput"], ["shell", "-c", ADD_ROW], ["shell", "-c", ADD_ADDRESS],
                     ["shell", "-c", TASK_RAN]):
            p = subprocess.run([py, "manage.py", *args], cwd=base / "site1", env=run_env,
                               capture_output=True, text=True, timeout=900)
            assert p.returncode == 0, p.stdout + p.stderr
        shutil.copy2(base / "site1" / "default.db", base / "site2" / "default.db")
        for n in ("site1", "site2"):
            (base / n / "media").mkdir(exist_ok=True)
        (base / "site1" / "media" / "note.txt").write_text("a file of its own\n")
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def adopted(host, seed):
    """site1 adopted as a new site; (name, source hash before, rows before, what adopt
    said)."""
    name = host.unique("ad")
    before = tree_hash(seed)
    counts = rows(seed / "site1" / "default.db")
    p = host("adopt", seed / "site1", "--as", name, "--path", seed, "--yes")
    yield name, before, counts, p.stderr
    host("rm", name, "--yes", "--no-archive", check=False)


def test_dry_run_plans_and_changes_nothing(host, seed):
    before, sites = tree_hash(seed), names(host)
    p = host("adopt", seed / "site1", "--as", host.unique("dry"), "--path", seed,
             "--dry-run", "--json")
    plan = json.loads(p.stdout)["plan"]
    assert plan["app"] == "cosi" and plan["languages"] == ["en", "de"]
    assert plan["front_end"] == "extjs"             # Cosi's default_ui, lino_extjs.extjs
    assert "SITE.is_demo_site = False" in plan["own"]
    assert plan["plugins"] == ["lino_xl.lib.addresses"]
    assert "# Site.get_installed_plugins(): its own plugins are the site's plugins " \
        "(lino_xl.lib.addresses)" in plan["own"] and not plan["notes"]
    assert names(host) == sites and tree_hash(seed) == before


def answered(said):
    """How many tables adopt compared the answers of (None: it did not say)."""
    m = re.search(r"the same answers as the source's to (\d+) requests", said)
    return int(m[1]) if m else None


def test_same_rows_settings_carried_source_untouched(host, seed, adopted):
    name, before, counts, said = adopted
    assert answered(said) >= 10, said       # signed in, every table with rows
    assert rows(host.root / name / "default.db") == counts
    parts = render_site.split_settings((host.root / name / "settings.py").read_text())
    own = parts[2]
    assert "SITE.is_demo_site = False" in own
    assert "SITE.plugins.countries.country_code = 'DE'" in own
    assert "EMAIL_SUBJECT_PREFIX = '[seed] '" in own
    assert "# SECRET_KEY: linohost provides it" in own and "seed-secret" not in own
    record = tomllib.loads((host.root / "registry" / f"{name}.toml").read_text())
    assert record["plugins"] == ["lino_xl.lib.addresses"]
    assert "SITE = Site(globals(), ['lino_xl.lib.addresses'])" in parts[0]
    out = host("manage", name, "--", "shell", "-c", "from lino.api import rt; " + EFFECT).stdout
    assert out.split("OWN ", 1)[1].strip() == "False DE en de [seed] 1 1"
    assert tree_hash(seed) == before
    assert list((host.root / name / "media").rglob("note.txt"))


def test_two_sites_made_alike_answer_alike(host):
    """What adopt compares, asked of two React sites made alike from one demo template,
    one under a URL prefix and one on a host name of its own: their index page (which
    names the project directory and the time of the front end's cache, and carries
    linohost's prefix script under a prefix), dashboard, user settings, tables and first
    rows answer the same; a title of its own is a page that differs."""
    from linohost.apply.adopt import probe, same_answers
    from linohost.apply.context import Context
    from linohost.apply.system import System
    from linohost.errors import StepFailed
    from linohost.model.host import Host
    prefixed, own_host = host.unique("alike"), host.unique("alike")
    host("new", prefixed, "--app", "cosi", "--title", "Alike")
    host("new", own_host, "--app", "cosi", "--title", "Alike",
         "--domain", f"{own_host}.example.test")
    try:
        h = Host.open(host.root)
        ctx = Context(h, System(h.cfg, h.home_dir))
        said = [probe(ctx, h.env(h.site(n).env).bin_python, h.site_dir(n), [],
                      answers_of="robin", as_site=n) for n in (prefixed, own_host)]
        assert said[0] == said[1]
        index = said[0]["/"]
        assert index[0] == 200 and "<title>Alike</title>" in index[1], index
        assert "(the project directory's name)" in index[1] and prefixed not in index[1]
        assert said[0]["/user/settings"][0] == 200 and said[0]["/api/main_html"][0] == 200
        details = [p for p in said[0] if re.fullmatch(r"/api/\w+/\w+/\d+", p)]
        # (a table without a detail window answers 404: on both sides)
        assert len([p for p in details if said[0][p][0] == 200]) >= 10, details
        with (h.site_dir(own_host) / "settings.py").open("a") as f:     # its own part
            f.write('SITE.title = "Another"\n')
        other = probe(ctx, h.env(h.site(own_host).env).bin_python, h.site_dir(own_host), [],
                      answers_of="robin", as_site=own_host)
        with pytest.raises(StepFailed, match="answers GET / otherwise"):
            same_answers(own_host, said[:1], other)
    finally:
        for n in (prefixed, own_host):
            host("rm", n, "--yes", "--no-archive", check=False)


def bad(host, *args):
    sites = names(host)
    p = host("adopt", *args, "--yes", check=False)
    assert p.returncode != 0, p
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert names(host) == sites
    return p.stderr


def test_rows_that_differ_are_named():
    from linohost.apply.adopt import same_rows
    from linohost.errors import StepFailed
    before, later = {"a": 1, "b": 2}, {"a": 1, "b": 3}      # b written during the archive
    for after in (before, later):
        same_rows("s", [before, later], after)
    for after, how in (({"a": 1, "b": 4}, "in b (3 before, 4 after)"),
                       ({"a": 1}, "in b (3 before, None after)"),
                       ({**later, "c": 1}, "in c (None before, 1 after)")):
        with pytest.raises(StepFailed, match=re.escape(how)):
            same_rows("s", [before, later], after)


def test_plugins_of_its_own_become_the_sites_plugins(tmp_path):
    """A Site class that installs plugins beyond its app's: they become the record's
    plugins (Lino's local_apps in the generated settings, and a zygote group of their
    own); one that leaves out an app's plugin cannot be carried and says so."""
    import dataclasses
    from types import SimpleNamespace
    from linohost.keeper.zygotes import group_of
    from linohost.model.adoption import own_part
    from linohost.model.site import Site
    probe = {"attrs": {}, "plugin_configs": [], "settings": {},
             "methods": {"get_installed_plugins": ""}, "plugins": ["lino_xl.lib.addresses"],
             "plugins_dropped": []}
    own, notes = own_part(probe, "/src/settings.py")
    assert "# Site.get_installed_plugins(): its own plugins are the site's plugins " \
        "(lino_xl.lib.addresses)" in own and notes == []
    own, notes = own_part({**probe, "plugins_dropped": ["lino_xl.lib.phones"]}, "/s")
    assert "# Site.get_installed_plugins(): a method of the old Site class, not carried" in own
    assert notes == ["Site.get_installed_plugins() is not carried: add it to a plugin or "
                     "the app (it leaves out lino_xl.lib.phones)"]
    site = Site(name="s1", app="cosi", settings_module="lino_cosi.lib.cosi.settings",
                env="default", db="sqlite", title="s1")
    mine = dataclasses.replace(site, plugins=("lino_xl.lib.addresses",))
    context = dict(site_prefix="/", static_root="/x", allowed_hosts=["h"])
    assert "SITE = Site(globals())\n" in render_site.generated_settings(site, **context)
    assert "SITE = Site(globals(), ['lino_xl.lib.addresses'])\n" in \
        render_site.generated_settings(mine, **context)
    host = SimpleNamespace(site_dir=lambda name: tmp_path / name,
                           site_prefix=lambda s: "/")
    assert len(group_of(host, site)) == 6 and len(group_of(host, mine)) == 7


def test_answers_that_differ_are_named():
    from linohost.apply.adopt import same_answers
    from linohost.errors import StepFailed
    a = {"/api/contacts/Persons": [200, {"count": 2, "rows": [[1, "Ann"], [2, "Bob"]]}],
         "/api/countries/Countries": [200, "<html>y</html>"]}
    same_answers("s", [a], dict(a))
    persons = a["/api/contacts/Persons"][1]
    for after, how in (
            ({**a, "/api/contacts/Persons": [200, {**persons, "rows": [[1, "Ann"], [2, "Bo"]]}]},
             "another body: body.rows[1][1] is 'Bo' after, 'Bob' before"),
            ({**a, "/api/contacts/Persons": [200, {**persons, "rows": [[1, "Ann"]]}]},
             "another body: body.rows has 1 items after, 2 before"),
            ({**a, "/api/contacts/Persons": [200, {"rows": persons["rows"]}]},
             "another body: body.count is missing after, 2 before"),
            ({**a, "/api/countries/Countries": [200, "<html>z</html>"]},
             "another body: body is '<html>z</html>' after, '<html>y</html>' before"),
            ({**a, "/api/contacts/Persons": [500, persons]}, "500 after, 200 before"),
            ({"/api/countries/Countries": a["/api/countries/Countries"]}, "not at all"),
            ({**a, "/api/x/Y": [200, "w"]}, "not before")):
        with pytest.raises(StepFailed, match=re.escape(how)):
            same_answers("s", [a], after)
    # long texts: from where they part
    from linohost.apply.adopt import first_difference
    part = "'" + "x" * 10 + "{}" + "y" * 45 + "..."
    assert first_difference("x" * 70 + "a" + "y" * 80, "x" * 70 + "b" + "y" * 80) == \
        f"body from character 60 is {part.format('b')} after, {part.format('a')} before"
    # asked twice (before and after the archive), either answer will do
    moved = {**a, "/api/countries/Countries": [200, "<html>z</html>"]}
    same_answers("s", [a, moved], dict(a))
    same_answers("s", [a, moved], moved)
    with pytest.raises(StepFailed, match=re.escape("'<html>w</html>' after, '<html>z</html>'")):
        same_answers("s", [a, moved], {**a, "/api/countries/Countries": [200, "<html>w</html>"]})


def test_bad_input_changes_nothing(host, seed, adopted, tmp_path):
    name = adopted[0]
    before = tree_hash(seed)
    assert "not a Lino project" in bad(host, tmp_path)
    assert "already under linohost" in bad(host, host.root / name)
    assert "already exists" in bad(host, seed / "site2", "--as", name, "--path", seed)
    raising = seed / "raising"
    shutil.copytree(seed / "site2", raising)
    try:
        (raising / "settings.py").write_text("raise RuntimeError('broken on purpose')\n")
        assert "broken on purpose" in bad(host, raising, "--as", host.unique("r"))
        (raising / "settings.py").write_text(SETTINGS.format(title="r").replace(
            'str(SITE.site_dir / "default.db")', '"/nonexistent/x.db"'))
        assert "cannot read the database" in bad(host, raising, "--as", host.unique("r"),
                                                 "--path", seed)
        assert "is SQLite: use --db copy" in bad(host, seed / "site2", "--db", "move")
    finally:
        shutil.rmtree(raising)
    assert tree_hash(seed) == before


# -- a source on PostgreSQL or MariaDB, reached with its own user -------------------------

SERVER_DATABASES = {
    "postgresql": {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
                   "PORT": "5432"},
    "mysql": {"ENGINE": "django.db.backends.mysql", "HOST": "127.0.0.1", "PORT": "3306",
              "OPTIONS": {"charset": "utf8mb4"}},
}
#: What a project on MariaDB without mysqlclient has (the environment has PyMySQL).
PYMYSQL = "import pymysql\npymysql.install_as_MySQLdb()\n"


def admin_connection(engine, db):
    if engine == "postgresql":
        return psycopg.connect(host="127.0.0.1", user="postgres", dbname=db, autocommit=True)
    return pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True)


def server_rows(engine, db):
    """{table: rows} of the server database *db*, read as the server's admin."""
    with contextlib.closing(admin_connection(engine, db)) as c:
        cur = c.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    if engine == "postgresql" else "SHOW TABLES")
        q = '"' if engine == "postgresql" else "`"
        out = {}
        for (t,) in cur.fetchall():
            cur.execute(f"SELECT COUNT(*) FROM {q}{t}{q}")
            out[t] = cur.fetchone()[0]
        return out


def server_database(engine, name, password, create=True):
    """Create (or with *create* false drop) database and user *name*, as getlino does."""
    root = "postgres" if engine == "postgresql" else None
    with contextlib.closing(admin_connection(engine, root)) as c:
        cur = c.cursor()
        if engine == "postgresql":
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'DROP ROLE IF EXISTS "{name}"')
            if create:
                cur.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        else:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
            if create:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
                cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'%%'", (name,))


@pytest.fixture
def server_source(request, host, seed):
    """A seed-layout project on a server database of its own (user, password), filled by
    its own `manage.py prep`: (engine, project, database name, password)."""
    engine = request.param
    name = f"lhadopt_{engine[:2]}_{os.getpid()}"
    password = secrets.token_hex(12)
    server_database(engine, name, password)
    d = seed / f"srv{engine[:2]}"
    (d / "config").mkdir(parents=True)
    (d / "manage.py").write_text(MANAGE)
    database = {**SERVER_DATABASES[engine], "NAME": name, "USER": name, "PASSWORD": password}
    text = SETTINGS.format(title=d.name).split("DATABASES = ")[0]
    (d / "settings.py").write_text((PYMYSQL if engine == "mysql" else "") + text
                                   + f"DATABASES = {{'default': {database!r}}}\n")
    env = Env.load(host.root / "envs" / "default" / Env.FILENAME)
    for args in (["prep", "--noinput"], ["shell", "-c", ADD_ROW], ["shell", "-c", ADD_ADDRESS],
                 ["shell", "-c", TASK_RAN]):
        p = subprocess.run([env.bin_python, "manage.py", *args], cwd=d, capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(seed)}, text=True, timeout=900)
        assert p.returncode == 0, p.stdout + p.stderr
    (d / "media").mkdir(exist_ok=True)
    yield engine, d, name, password
    server_database(engine, name, password, create=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("server_source", ["postgresql", "mysql"], indirect=True)
def test_a_site_on_a_server_database_moves_in_with_its_rows(host, seed, server_source):
    """Dumped as the project's own database user (never printed), restored into a new
    database of the same engine: the same rows, its settings in effect, the source's
    database untouched; a database it cannot reach is refused with one line."""
    engine, project, db, password = server_source
    counts = server_rows(engine, db)
    name = host.unique("sv")
    p = host("adopt", project, "--as", name, "--path", seed, "--dry-run", "--json")
    plan = json.loads(p.stdout)["plan"]
    assert plan["db"] == engine and f"{engine} database {db} at 127.0.0.1" in plan["database"]
    p = host("adopt", project, "--as", name, "--path", seed, "--yes")
    try:
        assert password not in p.stdout + p.stderr
        assert answered(p.stderr) >= 10, p.stderr
        record = tomllib.loads((host.root / "registry" / f"{name}.toml").read_text())
        assert record["db"] == engine and record["db_name"] != db
        assert server_rows(engine, record["db_name"]) == counts
        assert server_rows(engine, db) == counts
        out = host("manage", name, "--", "shell", "-c", "from lino.api import rt; " + EFFECT)
        assert out.stdout.split("OWN ", 1)[1].strip() == "False DE en de [seed] 1 1"
    finally:
        host("rm", name, "--yes", "--no-archive", check=False)
    settings = project / "settings.py"
    good = settings.read_text()
    try:
        # (not a wrong password: the test server trusts local PostgreSQL connections)
        settings.write_text(good.replace(f"'NAME': '{db}'", "'NAME': 'lhadopt_none'"))
        assert "cannot" in bad(host, project, "--as", host.unique("sv"), "--path", seed)
    finally:
        settings.write_text(good)
    assert server_rows(engine, db) == counts


def password_is(engine, user, password):
    """Whether *password* is *user*'s. PostgreSQL: checked against the role's stored
    verifier (the test server trusts local connections, whatever the password)."""
    if engine == "mysql":
        try:
            pymysql.connect(host="127.0.0.1", user=user, password=password).close()
            return True
        except pymysql.err.OperationalError:
            return False
    with contextlib.closing(admin_connection(engine, "postgres")) as c:
        stored = c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (user,)).fetchone()[0]
    if stored.startswith("md5"):
        return stored == "md5" + hashlib.md5((password + user).encode()).hexdigest()
    iterations_salt, keys = stored.split("$")[1:]
    iterations, salt = iterations_salt.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt),
                                 int(iterations))
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    return base64.b64encode(hashlib.sha256(client).digest()).decode() == keys.split(":")[0]


@pytest.mark.parametrize("server_source", ["postgresql", "mysql"], indirect=True)
def test_db_move_keeps_the_database_and_takes_over_its_user(host, seed, server_source):
    """`--db move`: the site keeps the source's database under its name and its user,
    with a new password; killed half-way, the user has its old password again and the
    database its rows (the source runs as before); `rm` drops both at last."""
    engine, project, db, password = server_source
    counts = server_rows(engine, db)
    name = host.unique("mv")
    args = ["adopt", project, "--as", name, "--path", seed, "--db", "move", "--yes"]
    plan = json.loads(host(*args[:-1], "--dry-run", "--json").stdout)["plan"]
    assert plan["db_mode"] == "move" and db in plan["database"]
    assert kill_at(host, f"{name}: making the site from the archive", *args)
    assert name not in names(host)             # the next command repaired
    assert password_is(engine, db, password) and server_rows(engine, db) == counts
    assert not list((host.root / "secrets").glob(f"*-{name}"))
    p = host(*args)
    try:
        assert password not in p.stdout + p.stderr and answered(p.stderr) >= 10, p.stderr
        record = tomllib.loads((host.root / "registry" / f"{name}.toml").read_text())
        assert record["db"] == engine and record["db_name"] == db
        new = (host.root / "secrets" / f"db-{name}").read_text().strip()
        assert password_is(engine, db, new) and not password_is(engine, db, password)
        assert server_rows(engine, db) == counts
        out = host("manage", name, "--", "shell", "-c", "from lino.api import rt; " + EFFECT)
        assert out.stdout.split("OWN ", 1)[1].strip() == "False DE en de [seed] 1 1"
    finally:
        host("rm", name, "--yes", "--no-archive", check=False)
    assert db not in names_on_server(engine)


def names_on_server(engine):
    """The names of the server's databases and users (roles)."""
    with contextlib.closing(admin_connection(engine, "postgres" if engine == "postgresql"
                                             else None)) as c:
        cur = c.cursor()
        out = set()
        for q in (("SELECT datname FROM pg_database", "SELECT rolname FROM pg_roles")
                  if engine == "postgresql" else ("SHOW DATABASES", "SELECT user FROM mysql.user")):
            cur.execute(q)
            out |= {r[0] for r in cur.fetchall()}
        return out


def test_killed_half_way_is_repaired(host, seed):
    name = host.unique("kill")
    before = tree_hash(seed)
    assert kill_at(host, f"{name}: loading the sqlite database",
                   "adopt", seed / "site2", "--as", name, "--path", seed, "--yes")
    assert name not in names(host)             # the next command repaired
    assert not (host.root / name).exists()
    assert not list((host.root / "run" / "journal").glob("*.json"))
    assert tree_hash(seed) == before


# -- a source whose Lino packages no environment of the host has --------------------------

def older_version(python, package):
    """The release of *package* before the one *python* has (from the package index)."""
    out = subprocess.run([python, "-m", "pip", "index", "versions", package],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    have = subprocess.run([python, "-c", f"from importlib import metadata; "
                                         f"print(metadata.version({package!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    versions = re.search(r"Available versions: (.*)", out)[1].split(", ")
    return versions[versions.index(have) + 1]


def test_an_environment_is_built_from_the_pip_freeze_of_a_source_no_environment_matches(
        host, seed, tmp_path):
    """A project in a virtualenv of its own (the session's, with an older lino-react):
    adopt plans and builds a new environment from its pins, the site runs in it with
    the source's versions; `env rm` refuses an environment with sites and removes it
    when it has none."""
    from linohost.apply.envs import installed
    base = Path(tempfile.mkdtemp(prefix="linohost-ownenv-"))
    try:
        base.chmod(0o755)
        env = Env.load(host.root / "envs" / "default" / Env.FILENAME)
        subprocess.run(["cp", "-a", env.path, base / "env"], check=True)
        shutil.rmtree(base / "env" / "static")
        (base / "env" / Env.FILENAME).unlink()
        py = str(base / "env" / "bin" / "python")
        old = older_version(py, "lino-react")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", f"lino-react=={old}"],
                       check=True, timeout=600)
        shutil.copytree(seed / "site2", base / "own")
        name = host.unique("oe")
        plan = json.loads(host("adopt", base / "own", "--as", name, "--path", seed,
                               "--dry-run", "--json").stdout)["plan"]
        new_env = plan["env"]
        assert new_env not in {e["name"] for e in json.loads(host("env", "list", "--json").stdout)}
        assert f"lino-react=={old}" in plan["new_env"], plan["new_env"]
        assert not {p.split("==")[0] for p in plan["new_env"]} & {"pip", "setuptools"}
        p = host("adopt", base / "own", "--as", name, "--path", seed, "--yes", timeout=1800)
        assert f"building environment {new_env} from the source's pip freeze" in p.stderr
        record = tomllib.loads((host.root / "registry" / f"{name}.toml").read_text())
        assert record["env"] == new_env
        got = installed(Env.load(host.root / "envs" / new_env / Env.FILENAME))
        assert got["lino-react"] == old and got["lino"] == installed(env)["lino"]
        assert rows(host.root / name / "default.db") == rows(base / "own" / "default.db")
        refused = host("env", "rm", new_env, check=False)
        assert refused.returncode == 2 and name in refused.stderr, refused
        host("rm", name, "--yes", "--no-archive")
        host("env", "rm", new_env)
        assert not (host.root / "envs" / new_env).exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
