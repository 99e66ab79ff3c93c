"""What a command may leave behind on a host root and on the database servers.

Tests of failing commands take a snapshot before, run the command, and check
that the snapshot after is the same and that no database or user was made.
"""

import os
import pwd

import psycopg
import pymysql

from linohost.model.config import KEY_BY_NAME


def snapshot(host):
    """Every entry of the host root that a site touches, as relative paths."""
    root = host.root
    out = {p.name for p in root.iterdir()}
    for sub in ("registry", "secrets", "local", "run/journal"):
        d = root / sub
        if d.is_dir():
            out |= {f"{sub}/{p.name}" for p in d.iterdir()}
    return out


def journals(host):
    d = host.root / "run" / "journal"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def server_leftovers(db):
    """The PostgreSQL and MariaDB databases and users named *db* (none expected)."""
    found = []
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            found.append(f"postgresql database {db}")
        if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db,)).fetchone():
            found.append(f"postgresql role {db}")
    c = pymysql.connect(host="127.0.0.1", user="root")
    try:
        with c.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (db,))
            if cur.fetchone():
                found.append(f"mysql database {db}")
            cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", (db,))
            if cur.fetchone():
                found.append(f"mysql user {db}")
    finally:
        c.close()
    return found


def assert_site_absent(host, name):
    """Nothing of site *name*: directory, record, secret, journal, database, user."""
    assert not (host.root / name).exists(), f"project directory {name} left"
    assert not (host.root / "registry" / f"{name}.toml").exists(), "registry record left"
    assert not (host.root / "secrets" / f"db-{name}").exists(), "database password left"
    assert journals(host) == [], f"journal left: {journals(host)}"
    assert server_leftovers(host.db_name(name)) == []
    assert name not in host("list").stdout
    if os.geteuid() == 0:                     # its own Unix user and HOME are gone too
        user = KEY_BY_NAME["site_user_prefix"].default + name
        assert user not in {p.pw_name for p in pwd.getpwall()}, f"Unix user {user} left"
        assert not (host.root / "home" / name).exists(), "HOME of its user left"


def assert_one_error_line(p, code=2, *words):
    """A refused command: exit *code*, one line on stderr, naming *words*."""
    lines = p.stderr.splitlines()
    assert p.returncode == code, (p.returncode, p.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert lines[0].startswith("linohost: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]
