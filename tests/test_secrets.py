"""The SECRET_KEY policies (derived, shared, env), read from real sites, and
where keys may and may not be on disk."""

import os
import stat
import tomllib
from contextlib import contextmanager

import pytest

from leftovers import assert_one_error_line, assert_site_absent, snapshot

pytestmark = pytest.mark.slow

SHOW_KEY = "from django.conf import settings; print('KEY', settings.SECRET_KEY)"


def secret_key(host, site, env=None):
    """The SECRET_KEY the site really uses."""
    out = host("manage", site, "--", "shell", "-c", SHOW_KEY, env=env).stdout
    [key] = [line[4:] for line in out.splitlines() if line.startswith("KEY ")]
    return key


def policy_of(host):
    return tomllib.loads((host.root / "linohost.toml").read_text())["secret_policy"]


@contextmanager
def policy(host, name):
    """The host under secret policy *name*; the old one is back afterwards."""
    old = policy_of(host)
    host("init", "--secret", name)
    try:
        assert policy_of(host) == name
        assert f"SECRET_POLICY = {name!r}" in local_module(host)
        yield
    finally:
        host("init", "--secret", old)
    assert policy_of(host) == old


def local_module(host):
    return (host.root / "local" / "djangosite_local.py").read_text()


def read_secret(host, name):
    return (host.root / "secrets" / name).read_text().strip()


@pytest.fixture(scope="module")
def two_sites(host):
    names = [host.unique("sec"), host.unique("sec")]
    for n in names:
        host("new", n, "--app", "cosi", "--empty")
    yield names
    for n in names:
        host("rm", n, "--yes", "--no-archive", check=False)


@pytest.fixture
def no_env_key(monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)


def assert_no_key_in_readable_files(host, keys):
    """No file outside the owner-only secrets directory holds any of *keys*;
    every file in there is owner-only."""
    secrets = host.root / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == (0o711 if os.geteuid() == 0 else 0o700)
    for f in secrets.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    needles = [k.encode() for k in keys if k]
    assert needles
    for dirpath, dirnames, filenames in os.walk(host.root):
        if dirpath == str(host.root):
            dirnames[:] = [d for d in dirnames if d not in ("secrets", "envs")]
        for n in filenames:
            path = os.path.join(dirpath, n)
            if os.path.islink(path) or not stat.S_ISREG(os.stat(path).st_mode):
                continue                  # e.g. the wsgi daemons' sockets of a running serve
            data = open(path, "rb").read()
            assert not any(k in data for k in needles), f"a secret key is in {path}"


def test_derived_keys_are_distinct_per_site(host, two_sites):
    assert policy_of(host) == "derived"
    keys = [secret_key(host, s) for s in two_sites]
    master = read_secret(host, "master.key")
    assert keys[0] != keys[1]
    assert all(len(k) >= 50 and k != master for k in keys)
    assert secret_key(host, two_sites[0]) == keys[0]        # stable
    assert_no_key_in_readable_files(host, keys + [master])


def test_shared_key_is_one_for_all(host, two_sites):
    derived = [secret_key(host, s) for s in two_sites]
    with policy(host, "shared"):
        keys = [secret_key(host, s) for s in two_sites]
        shared = read_secret(host, "shared.key")
        assert keys == [shared, shared]
        assert shared not in derived and len(shared) >= 50
        assert_no_key_in_readable_files(host, [shared])
    # back to derived: the same per-site keys as before
    assert [secret_key(host, s) for s in two_sites] == derived


def test_env_key_comes_from_the_environment(host, two_sites, no_env_key):
    with policy(host, "env"):
        key = "linohost-test-" + "k" * 40
        assert [secret_key(host, s, env={"DJANGO_SECRET_KEY": key}) for s in two_sites] == \
            [key, key]
        assert key not in local_module(host)
        # without it, a clear error
        p = host("manage", two_sites[0], "--", "shell", "-c", SHOW_KEY, check=False)
        assert_one_error_line(p, 2, "DJANGO_SECRET_KEY is not set", "'env'")
        assert "KEY " not in p.stdout


def test_new_under_env_policy_needs_the_key(host, no_env_key):
    name = host.unique("envk")
    with policy(host, "env"):
        before = snapshot(host)
        p = host("new", name, "--app", "cosi", "--empty", check=False)
        assert_one_error_line(p, 2, "DJANGO_SECRET_KEY is not set", "'env'")
        assert snapshot(host) == before
        assert_site_absent(host, name)
        # with the key it works, and the site uses it
        key = "linohost-test-env-" + "x" * 40
        host("new", name, "--app", "cosi", "--empty", env={"DJANGO_SECRET_KEY": key})
        try:
            assert secret_key(host, name, env={"DJANGO_SECRET_KEY": key}) == key
            assert_no_key_in_readable_files(host, [key])
        finally:
            host("rm", name, "--yes", "--no-archive")


def test_switching_policy_rewrites_only_the_generated_part(host, two_sites):
    """`init --secret` regenerates djangosite_local.py; the operator's part stays."""
    path = host.root / "local" / "djangosite_local.py"
    original = path.read_text()
    marker = "# ==== linohost keeps everything below this line"
    assert marker in original
    mine = "\n# operator's line kept by linohost (test_secrets)\n"
    path.write_text(original + mine)
    try:
        with policy(host, "shared"):
            assert local_module(host).endswith(mine)
        assert local_module(host).endswith(mine)
        settings = [(host.root / s / "settings.py").read_text() for s in two_sites]
        assert all("SECRET_KEY" not in t for t in settings)
    finally:
        path.write_text(original)


@pytest.mark.parametrize("db", ["postgresql", "mysql"])
def test_database_password_is_only_in_the_secrets_dir(host, db):
    """The generated password of a site's database user: owner-only, in no other
    file, and what the site really connects with."""
    name = host.unique(f"pw{db[:2]}")
    host("new", name, "--app", "cosi", "--db", db, "--empty")
    try:
        path = host.root / "secrets" / f"db-{name}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().strip()
        assert len(password) >= 20
        out = host("manage", name, "--", "shell", "-c",
                   "from django.conf import settings; "
                   "print('PW', settings.DATABASES['default']['PASSWORD'])").stdout
        assert f"PW {password}" in out.splitlines()
        assert_no_key_in_readable_files(host, [password])
    finally:
        host("rm", name, "--yes", "--no-archive")
    assert_site_absent(host, name)
