"""`linohost adopt --db move` of a Noi site on PostgreSQL made by getlino itself, as
root (from PyPI, its own HOME for its config, without its machine-wide `apt-get`:
`startsite` installs nothing of the system): getlino creates the database and its
user (`sudo -u postgres psql`), writes the site's linod program into Debian's
supervisor (started if it was not running, stopped again) and its daily snapshot into
/etc/cron.daily. The site gets settings of its own (a Site attribute, a plugin option
and an installed plugin in its settings.py, two languages in getlino's config, a
`lino.ini` that runs its linod without channels) and rows after startsite, and its
linod runs its tasks while it is adopted. Adopted: the same database under a new
password, the same rows, the customisation in effect, its users sign in with the
passwords (and the sessions) they had, its linod stopped, the old directory unchanged."""

import configparser
import contextlib
import subprocess
import tomllib
from pathlib import Path

import psycopg
import pytest

from hoststate import wait_for
from test_adopt import ADD_ADDRESS, ADD_ROW, answered, names, server_database, server_rows, \
    tree_hash
from test_adopt_getlino import PASSWORD_SIGN_IN, SIGN_IN, WHO, bench_getlino

pytestmark = pytest.mark.slow

PRJ = "glnoi"
LINOD_CONF = Path(f"/etc/supervisor/conf.d/linod_{PRJ}.conf")
CRON_FILE = Path(f"/etc/cron.daily/make_snapshot_{PRJ}")
#: Its own settings, edited into what getlino wrote (old, new).
OWN = (("    log_each_action_request = False\n",
        "    log_each_action_request = False\n    is_demo_site = False\n"),
       ("    def get_plugin_configs(self):\n",
        "    def get_installed_plugins(self):\n"
        "        yield super().get_installed_plugins()\n"
        "        yield 'lino_xl.lib.addresses'\n\n"
        "    def get_plugin_configs(self):\n"),
       ("        yield 'help', 'make_help_pages', True\n",
        "        yield 'help', 'make_help_pages', True\n"
        "        yield 'countries', 'country_code', 'EE'\n"))
#: Its linod without channels (Lino's on Redis end after 10 s under redis-py 6+).
LINO_INI = "[linod]\nuse_channels = False\n"
EFFECT = ("from django.conf import settings as s; from lino.api import rt; print('OWN', "
          "s.SITE.is_demo_site, s.SITE.plugins.countries.country_code, "
          "' '.join(lng.django_code for lng in s.SITE.languages), "
          "s.SITE.plugins.linod.use_channels, "
          "rt.models.countries.Country.objects.filter(isocode='XA').count(), "
          "rt.models.addresses.Address.objects.filter(street='Adoptionsweg 1').count())")
#: Every task its linod runs has run once (it then only waits, or mails every 10 s).
TASKS_RAN = "SELECT count(*) FROM linod_systemtask WHERE NOT disabled AND last_end_time IS NULL"


def supervisor(*args):
    return subprocess.run(["supervisorctl", "-c", "/etc/supervisor/supervisord.conf", *args],
                          capture_output=True, text=True)


def service(*args):
    return subprocess.run(["service", "supervisor", *args], capture_output=True, text=True)


def as_root(g, project, *args):
    """manage.py of the getlino site, as root with getlino's HOME (as its operator)."""
    envs = [f"{k}={v}" for k, v in g.env.items()]
    p = subprocess.run(["env", "-i", *envs, project / "env" / "bin" / "python", "manage.py",
                        *args], cwd=project, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def tasks_left():
    with contextlib.closing(psycopg.connect(host="127.0.0.1", user="postgres", dbname=PRJ)) as c:
        return c.execute(TASKS_RAN).fetchone()[0]


@pytest.fixture(scope="module")
def noi():
    """getlino's Noi site glnoi on PostgreSQL, its linod running under Debian's
    supervisor: (Getlino, project directory, robin's session id)."""
    if subprocess.run(["which", "supervisorctl", "sudo", "service"],
                      capture_output=True).returncode:
        pytest.fail("Debian's supervisor and sudo are needed: run .ci/setup")
    server_database("postgresql", PRJ, "", create=False)    # (a run killed before)
    started = service("status").returncode != 0
    if started:
        assert service("start").returncode == 0
    g = None
    try:
        g = bench_getlino()
        config = g.home / ".getlino.conf"
        cp = configparser.ConfigParser(interpolation=None)
        cp.read(config)
        cp["DEFAULT"].update(db_engine="postgresql", linod="True", languages="en de",
                             supervisor_dir=str(LINOD_CONF.parent),
                             backups_base=str(g.base / "backups"))
        with config.open("w") as f:
            cp.write(f)
        g.startsite(PRJ, app="noi", as_root=True)
        # getlino ends with `service supervisor restart`: systemd restarts it; without
        # systemd (a container) Debian's init script only stops it on "restart".
        if service("status").returncode:
            assert service("start").returncode == 0
        wait_for("supervisor to answer", lambda: supervisor("pid").returncode == 0,
                 timeout=30)
        project = g.home / "lino" / "lino_local" / PRJ
        settings = project / "settings.py"
        text = settings.read_text()
        for old, new in OWN:
            assert old in text, old
            text = text.replace(old, new)
        settings.write_text(text)
        (project / "lino.ini").write_text(LINO_INI)
        as_root(g, project, "migrate", "--run-syncdb")       # the new plugin's table
        for code in (ADD_ROW, ADD_ADDRESS):
            as_root(g, project, "shell", "-c", code)
        sid = g.home / "sid"
        as_root(g, project, "shell", "-c", f"OUT = {str(sid)!r}\n" + SIGN_IN)
        assert supervisor("restart", f"linod-{PRJ}").returncode == 0   # its new settings
        wait_for("its linod to run every task once", lambda: tasks_left() == 0, timeout=300)
        assert "RUNNING" in supervisor("status", f"linod-{PRJ}").stdout
        yield g, project, sid.read_text().strip()
    finally:
        if LINOD_CONF.exists():
            LINOD_CONF.unlink()
            supervisor("update")
        if started:
            service("stop")
        CRON_FILE.unlink(missing_ok=True)
        server_database("postgresql", PRJ, "", create=False)
        if g is not None:
            g.close()


@pytest.fixture(scope="module")
def adopted(host, noi):
    """glnoi adopted with --db move: (name, the command's result, tree hash and rows
    before)."""
    g, project, _ = noi
    before, counts = tree_hash(project), server_rows("postgresql", PRJ)
    name = host.unique("gn")
    p = host("adopt", project, "--as", name, "--db", "move", "--yes", check=False,
             env={"HOME": str(g.home)}, timeout=2400)
    yield name, p, before, counts
    host("rm", name, "--yes", "--no-archive", check=False)


def test_the_plan_names_its_settings_plugin_database_and_linod(host, noi):
    g, project, _ = noi
    p = host("adopt", project, "--as", host.unique("gd"), "--db", "move", "--dry-run",
             env={"HOME": str(g.home)})
    text = p.stdout + p.stderr
    assert "getlino site" in text and "lino_xl.lib.addresses" in text
    assert f"move: postgresql database {PRJ}" in text
    assert f"supervisor: {LINOD_CONF} (linod-{PRJ})" in text
    assert f"cron: {CRON_FILE}" in text
    assert "RUNNING" in supervisor("status", f"linod-{PRJ}").stdout


def test_moves_in_with_its_rows_settings_and_passwords(host, noi, adopted):
    g, project, sid = noi
    name, p, before, counts = adopted
    assert p.returncode == 0, p.stderr[-3000:]
    assert answered(p.stderr) >= 20, p.stderr
    record = tomllib.loads((host.root / "registry" / f"{name}.toml").read_text())
    assert (record["db"], record["db_name"], record["plugins"]) == \
        ("postgresql", PRJ, ["lino_xl.lib.addresses"])
    assert server_rows("postgresql", PRJ) == counts
    out = host("manage", name, "--", "shell", "-c", EFFECT).stdout
    assert out.split("OWN ", 1)[1].strip() == "False EE en de False 1 1"
    out = host("manage", name, "--", "shell", "-c",
               f"PREFIX = '/{name}/'\n" + PASSWORD_SIGN_IN).stdout
    assert [ln.split()[1:] for ln in out.splitlines() if ln.startswith("SIGN-IN")] \
        == [["200", "True"], ["200", "False"]]
    out = host("manage", name, "--", "shell", "-c", f"SID = {sid!r}\n" + WHO).stdout
    assert out.split("WHO ", 1)[1].split() == ["robin", "False"]


def test_its_linod_and_snapshot_are_stopped_and_its_directory_unchanged(host, noi, adopted):
    g, project, _ = noi
    name, p, before, _ = adopted
    assert p.returncode == 0, p.stderr[-3000:]
    kept = host.root / "adopted" / name / "files"
    assert not LINOD_CONF.exists() and (kept / str(LINOD_CONF).lstrip("/")).is_file()
    assert f"linod-{PRJ}" not in supervisor("status").stdout
    assert not CRON_FILE.exists() and (kept / str(CRON_FILE).lstrip("/")).is_file()
    assert tree_hash(project) == before
    assert name in names(host)
