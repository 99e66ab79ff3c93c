"""Sites on SQLite, PostgreSQL and MariaDB: created, checked, listed, removed."""

import json
import os
import re
import stat

import psycopg
import pymysql
import pytest

from hoststate import fingerprint

pytestmark = pytest.mark.slow


def query(host, site, sql):
    """Run SQL in the site's own database through `manage.py shell`."""
    code = ("from django.db import connection\n"
            "c = connection.cursor()\n"
            f"c.execute({sql!r})\n"
            "print('RESULT', c.fetchone()[0])\n")
    out = host("manage", site, "--", "shell", "-c", code).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("RESULT ")][0]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_demo_site_works_on_each_engine(host, cosi_sites, engine):
    site = cosi_sites[engine]
    p = host("manage", site, "--", "check")
    assert "no issues" in p.stdout + p.stderr
    # the demo data is there: Cosi's demo has dozens of partners and robin
    assert int(query(host, site, "SELECT COUNT(*) FROM contacts_partner")) > 50
    assert query(host, site, "SELECT username FROM users_user WHERE username = 'robin'") == "robin"
    # and in the right database
    vendor = query(host, site, "SELECT 1") and host(
        "manage", site, "--", "shell", "-c",
        "from django.db import connection; print('VENDOR', connection.vendor)").stdout
    assert f"VENDOR {engine}" in vendor


def test_list_and_show(host, cosi_sites):
    rows = {r["name"]: r for r in json.loads(host("list", "--json").stdout)}
    for engine, name in cosi_sites.items():
        r = rows[name]
        assert {"name", "app", "env", "db", "url", "path"} <= set(r)
        assert (r["app"], r["env"], r["db"]) == ("cosi", "default", engine)
        assert r["url"].endswith(f"/{name}/")
        assert r["path"] == str(host.root / name)
    shown = json.loads(host("show", cosi_sites["mysql"], "--json").stdout)
    listed = rows[cosi_sites["mysql"]]
    assert {k: shown[k] for k in listed} == listed       # show says more: warnings, ids
    if os.geteuid() == 0:
        assert shown["site_ids"] == "70000-99999" and 0 < shown["site_ids_left"] <= 30000
    table = host("list").stdout
    assert all(n in table for n in cosi_sites.values())


def test_project_layout(host, cosi_sites):
    dirs = [host.root / n for n in cosi_sites.values()]
    for d in dirs:
        for f in ("settings.py", "manage.py", "apache/wsgi.py", "__init__.py"):
            assert (d / f).is_file(), f
        assert (d / "media").is_dir() and (d / "config").is_dir()
        settings = (d / "settings.py").read_text()
        assert "djangosite_local.setup_site(SITE)" in settings
        assert "SECRET_KEY" not in settings  # no key in a readable file
    for f in ("manage.py", "apache/wsgi.py"):
        contents = {(d / f).read_bytes() for d in dirs}
        assert len(contents) == 1, f"{f} differs between sites"


def test_secrets_are_owner_only(host, cosi_sites):
    secrets = host.root / "secrets"
    # as root, sites pass through to their own files (0600), and list nothing
    assert stat.S_IMODE(secrets.stat().st_mode) == (0o711 if os.geteuid() == 0 else 0o700)
    files = list(secrets.iterdir())
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # sites never run as root: their data belongs to the unprivileged site user
    if os.geteuid() == 0:
        site_dir = host.root / cosi_sites["sqlite"]
        assert site_dir.stat().st_uid != 0
        assert (site_dir / "default.db").stat().st_uid != 0


def test_server_databases_have_their_own_user(host, cosi_sites):
    pg = host.db_name(cosi_sites["postgresql"])
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as c:
        owner = c.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                          (pg,)).fetchone()
    assert owner == (pg,)
    my = host.db_name(cosi_sites["mysql"])
    c = pymysql.connect(host="127.0.0.1", user="root")
    with c.cursor() as cur:
        cur.execute("SHOW GRANTS FOR %s@%s", (my, "127.0.0.1"))
        grants = " ".join(r[0] for r in cur.fetchall())
    c.close()
    assert f"ON `{my}`.*" in grants and "ON *.*" in grants  # usage only on *.*
    assert "ALL PRIVILEGES ON *.*" not in grants


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_rm_leaves_nothing(host, engine):
    name = host.unique(f"gone_{engine[:2]}")
    host("new", name, "--app", "cosi", "--db", engine, "--empty")
    p = host("rm", name, "--yes")
    assert str(host.root / name) in p.stderr  # it said what it destroys
    assert not (host.root / name).exists()
    assert not (host.root / "secrets" / f"db-{name}").exists()
    assert name not in host("list").stdout
    assert_no_database(host.db_name(name))


def assert_no_database(db):
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as c:
        assert c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None
        assert c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db,)).fetchone() is None
    c = pymysql.connect(host="127.0.0.1", user="root")
    with c.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (db,))
        assert cur.fetchone() is None
        cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", (db,))
        assert cur.fetchone() is None
    c.close()


def test_later_demo_sites_load_the_data_prep_made(host):
    """The second demo site of a kind is loaded from the first one's prep: same rows."""
    first, second = host.unique("dema"), host.unique("demb")
    p1 = host("new", first, "--app", "cosi", "--languages", "en,fr")
    p2 = host("new", second, "--app", "cosi", "--languages", "en,fr")
    try:
        # Another test of this host may have made the kind's template first.
        made = re.search(r"demo data made by prep today for (\S+)", p1.stderr)
        assert made or "demo" in p1.stderr
        assert f"the demo data made by prep today for {made[1] if made else first}" \
            in p2.stderr
        assert fingerprint(host, second) == fingerprint(host, first)
        assert "no issues" in host("manage", second, "--", "check").stderr + \
            host("manage", second, "--", "check").stdout
    finally:
        for n in (first, second):
            host("rm", n, "--yes", "--no-archive")
