"""Messages and exit codes a new user meets (issue 13): busy and bad ports, --root
after the subcommand, Ctrl-C, a declined `rm`, unknown names, database names of two
host roots on one server, URLs that work on this machine, missing locales."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psycopg
import pymysql
import pytest
import requests
import tomli_w
import tomllib

from runner import HostRoot, LINOHOST, make_root
from serving import announced, free_port, start_serve, stop_serve
from leftovers import assert_one_error_line, assert_site_absent, server_leftovers, snapshot


def run(*args, env=None, **kw):
    """`linohost ARGS` without LINOHOST_ROOT: only what is on the command line counts."""
    full = {k: v for k, v in os.environ.items() if k not in ("LINOHOST_ROOT", "LINOHOST_TRACEBACK")}
    return subprocess.run([*LINOHOST, *map(str, args)], capture_output=True, text=True,
                          env={**full, **(env or {})}, **kw)


@pytest.fixture
def empty_root():
    """An initialised host root without environments or sites."""
    base = make_root("linohost-msg-")
    h = HostRoot(base / "root")
    h("init", "--port", free_port())
    yield h
    shutil.rmtree(base, ignore_errors=True)


def set_key(h, table, key, value):
    """Set *key* of *table* in the host config file."""
    path = h.root / "linohost.toml"
    data = tomllib.loads(path.read_text())
    data.setdefault(table, {})[key] = value
    path.write_text(tomli_w.dumps(data))


# -- ports ---------------------------------------------------------------------------

@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_on_a_busy_port_says_so_before_starting_anything(empty_root, busy_port):
    for args in (["serve", "--port", busy_port], ["serve"]):
        if args == ["serve"]:                       # the port of the host config
            empty_root("init", "--port", busy_port)
        p = empty_root(*args, check=False)
        line = assert_one_error_line(p, 2, f"port {busy_port}", "in use", "--port N",
                                     "apache.port")
        assert "serving" not in p.stderr, line
    assert not (empty_root.root / "apache").exists(), "serve started something"


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_bad_ports_are_refused_up_front(empty_root, port):
    for command in ("serve", "init"):
        p = empty_root(command, f"--port={port}", check=False)
        assert_one_error_line(p, 2, "--port", port)
    assert not (empty_root.root / "apache").exists()


@pytest.mark.slow
def test_configtest_failure_shows_the_whole_reason(empty_root):
    set_key(empty_root, "apache", "extra_directives", "NoSuchDirective on")
    p = empty_root("serve", check=False, timeout=1800)
    assert p.returncode == 1, p.stderr
    last = p.stderr.splitlines()[-1]
    assert last.startswith("linohost: error: Apache configtest failed: "), p.stderr
    assert "Syntax error on line" in last and "Invalid command 'NoSuchDirective'" in last, last
    assert "serving" not in p.stderr


@pytest.mark.slow
def test_apache_that_exits_at_start_is_not_announced(empty_root, tmp_path):
    """The config passes configtest, but Apache cannot open a vhost's log (a directory)
    when it starts: no "serving ..." line, its reason is shown, and the error names no
    file that does not exist."""
    set_key(empty_root, "apache", "extra_directives", f'CustomLog "{tmp_path}" common')
    p = empty_root("serve", check=False, timeout=1800)
    assert p.returncode == 1, p.stderr
    assert "serving" not in p.stderr
    last = p.stderr.splitlines()[-1]
    assert last.startswith("linohost: error: Apache exited with code"), p.stderr
    assert f"could not open transfer log file {tmp_path}" in last, last
    for path in re.findall(r"(/[^\s:)]+[^\s:).])", last):
        assert Path(path).exists(), f"the error names {path}, which does not exist: {last}"


# -- --root anywhere ------------------------------------------------------------------

def test_root_is_accepted_after_the_subcommand(tmp_path):
    root = tmp_path / "r"
    p = run("init", "--root", root, "--port", "18999")
    assert p.returncode == 0, p.stderr
    assert (root / "linohost.toml").exists()
    assert run("list", "--root", root).returncode == 0
    assert run("env", "list", "--json", "--root", root).stdout.strip() == "[]"
    # `new` reads this root: it has no environment yet
    p = run("new", "shop", "--app", "cosi", "--root", root)
    assert_one_error_line(p, 2, "no environment named 'default'")
    # after the subcommand wins over before it (the nearer one)
    p = run("--root", tmp_path / "nothing", "list", "--json", "--root", root)
    assert p.returncode == 0 and json.loads(p.stdout) == [], p.stderr
    p = run("list", "--root", tmp_path / "nothing")
    assert_one_error_line(p, 2, "not a linohost root", str(tmp_path / "nothing"))


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["manage", "SITE", "--root", "ROOT", "--", "check"],
    ["manage", "--root", "ROOT", "SITE", "check"],
    ["show", "SITE", "--root", "ROOT"],
    ["status", "SITE", "--root", "ROOT"],
    ["run", "SITE", "--root", "ROOT", "--", "check"],
])
def test_root_is_accepted_after_positional_arguments(host, site, command):
    args = [{"SITE": site, "ROOT": str(host.root)}.get(a, a) for a in command]
    p = run(*args, env={"LINOHOST_ROOT": "/nonexistent"})
    assert p.returncode == 0, p.stderr


# -- status: what serves, whole lines ---------------------------------------------------

def a_site_record(h, name):
    """A site in the registry of *h* (status reads no more of it)."""
    from linohost.model.site import Site
    (h.root / "registry" / f"{name}.toml").write_text(Site(
        name=name, app="cosi", settings_module="lino_cosi.lib.cosi.settings",
        env="default", db="sqlite", title="Help desk").dumps())


def test_status_says_when_nothing_serves(empty_root):
    name = "helpdesk_of_the_county_town"       # longer than 80 columns allow beside the rest
    a_site_record(empty_root, name)
    p = empty_root("status")
    [row] = [line for line in p.stdout.splitlines() if line.startswith(name)]
    assert row.split()[:2] == [name, "unserved"], p.stdout
    assert "nothing serves the sites" in p.stderr and "linohost serve" in p.stderr
    [r] = json.loads(empty_root("status", "--json").stdout)
    assert r["state"] == "unserved"
    p = empty_root("status", "--check", check=False)
    assert_one_error_line(p, 1, "nothing serves the sites")


# -- the first admin of an empty site ----------------------------------------------------

CHECK_PASSWORD = """
from lino.api import rt
u = rt.models.users.User.objects.get(username={name!r})
print("ADMIN", u.user_type.name, u.check_password({password!r}))
"""


@pytest.mark.slow
def test_an_empty_site_gets_a_first_admin_and_commands_need_no_demo_user(host):
    name = host.unique("club")
    p = host("new", name, "--app", "cosi", "--empty", "--admin", "boss",
             "--admin-password-file", "-", input="s3cret-Pa55\n")
    try:
        assert "first admin" in p.stderr and "boss" in p.stderr and "s3cret" not in p.stderr
        out = host("manage", name, "--", "shell", "-c",
                   CHECK_PASSWORD.format(name="boss", password="s3cret-Pa55")).stdout
        assert "ADMIN admin True" in out, out
        # Lino's checkdata signs in as the site's first admin (not the demo's robin)
        r = json.loads(host("run", name, "--json", "--", "checkdata").stdout)
        assert r[0]["exit_code"] == 0, r
        p = host("manage", name, "--", "checkdata")
        assert "checks have been run" in p.stdout + p.stderr
        assert not list((host.root / name).glob(".first-admin*"))
    finally:
        host("rm", name, "--yes", "--no-archive")
    # without a password file: a new one, shown once, that works
    name = host.unique("club")
    p = host("new", name, "--app", "cosi", "--empty")
    try:
        m = re.search(r"first admin of \S+: admin, password (\S+) \(shown once", p.stderr)
        assert m, p.stderr
        out = host("manage", name, "--", "shell", "-c",
                   CHECK_PASSWORD.format(name="admin", password=m.group(1))).stdout
        assert "ADMIN admin True" in out, out
        assert m.group(1) not in (host.root / "registry" / f"{name}.toml").read_text()
    finally:
        host("rm", name, "--yes", "--no-archive")


# -- check --deploy ----------------------------------------------------------------------

@pytest.mark.slow
def test_show_names_the_deployment_warnings_check_deploy_gives(host, site):
    p = host("manage", site, "--", "check", "--deploy", check=False)
    given = sorted(set(re.findall(r"\((security\.W\d+)\)", p.stdout + p.stderr)))
    shown = json.loads(host("show", site, "--json").stdout)["deploy_warnings"]
    assert sorted(w.split(":")[0] for w in shown) == given, (shown, p.stdout + p.stderr)
    assert all("tls.mode is off" in w for w in shown)


def test_serve_help_names_both_backends():
    out = run("serve", "--help").stdout
    assert "keeper" in out and "mod_wsgi" in out


# -- Ctrl-C ----------------------------------------------------------------------------

def test_ctrl_c_during_start_up_prints_one_line(empty_root):
    """SIGINT while Python imports linohost's modules (-X importtime tells when)."""
    env = {**os.environ, "LINOHOST_ROOT": str(empty_root.root)}
    argv = [LINOHOST[0], "-X", "importtime", *LINOHOST[1:], "list"]

    def imports(lines):
        return [ln for ln in lines if ln.startswith("import time:")]
    whole = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    during_imports = 0
    for attempt in range(3):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"\| +click$", line.rstrip()):      # the CLI is being imported
                proc.send_signal(signal.SIGINT)
                break
        lines += proc.stderr.readlines()
        proc.wait(30)
        own = [ln.rstrip("\n") for ln in lines if not ln.startswith("import time:")]
        assert proc.returncode == 130, "".join(lines)
        assert own == ["linohost: interrupted"], "".join(own)
        # interrupted before every module was imported
        during_imports += len(imports(lines)) < len(imports(whole.stderr.splitlines()))
    assert during_imports, "no SIGINT arrived while linohost was starting"


@pytest.mark.slow
def test_ctrl_c_during_new_rolls_back_and_says_so(host):
    name = host.unique("intr")
    before = snapshot(host)
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    proc = subprocess.Popen([*LINOHOST, "new", name, "--app", "cosi", "--db", "postgresql",
                             "--empty"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "initialising" in line:
            assert server_leftovers(host.db_name(name)), "no database made yet"
            proc.send_signal(signal.SIGINT)
            break
    seen += proc.stderr.readlines()
    proc.wait(120)
    assert any("initialising" in s for s in seen), "".join(seen)
    assert proc.returncode == 130, "".join(seen)
    assert seen[-1].rstrip("\n") == f"linohost: interrupted: {name} rolled back", "".join(seen)
    assert "Traceback" not in "".join(seen)
    assert snapshot(host) == before, snapshot(host) ^ before
    assert_site_absent(host, name)


# -- a site for the next tests ----------------------------------------------------------

@pytest.fixture(scope="module")
def site(host):
    name = host.unique("shop")
    host("new", name, "--app", "cosi", "--empty", "--languages", "en,de")
    yield name
    host("rm", name, "--yes", "--no-archive", check=False)


@pytest.mark.slow
def test_declined_rm_says_nothing_was_removed(host, site):
    before = snapshot(host)
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    master, slave = os.openpty()                 # a terminal: rm asks
    try:
        proc = subprocess.Popen([*LINOHOST, "rm", site], env=env, stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        os.write(master, b"n\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    assert "Remove it?" in err, err
    assert proc.returncode == 1, err
    # the answer is echoed by a terminal, not into stderr: the line follows the prompt
    assert err.endswith(f"Remove it? [y/N]: linohost: error: not confirmed: nothing of {site} "
                        f"was removed\n"), err
    assert snapshot(host) == before
    assert site in [s["name"] for s in json.loads(host("list", "--json").stdout)]
    p = host("manage", site, "--", "check")
    assert "no issues" in p.stdout + p.stderr


@pytest.mark.slow
def test_rm_reads_the_answer_from_a_pipe(host, site):
    before = snapshot(host)
    p = host("rm", site, input="n\n", check=False)
    assert "Remove it?" in p.stderr and p.returncode == 1
    assert p.stderr.splitlines()[-1].startswith(
        f"linohost: error: not confirmed: nothing of {site} was removed"), p.stderr
    assert snapshot(host) == before
    p = host("rm", site, check=False, input="")           # no answer: nothing removed
    assert p.returncode == 1 and snapshot(host) == before
    copy = host.unique("pipe")
    host("clone", site, copy)
    host("rm", copy, "--no-archive", input="y\n")
    assert_site_absent(host, copy)


@pytest.mark.slow
def test_unknown_names_suggest_the_closest_and_the_list(host, site):
    typo = site[1] + site[0] + site[2:]              # "hsop..." for "shop..."
    for args in (["show", typo], ["rm", typo, "--yes"], ["manage", typo, "check"],
                 ["run", typo, "--", "check"]):
        p = host(*args, check=False)
        assert_one_error_line(p, 2, f"no site named {typo!r}", f"did you mean {site!r}?",
                              "`linohost list`")
    p = host("show", "zzzzzzzz", check=False)
    line = assert_one_error_line(p, 2, "`linohost list`")
    assert "did you mean" not in line
    p = host("new", host.unique("x"), "--app", "cosi", "--env", "defualt", check=False)
    assert_one_error_line(p, 2, "no environment named 'defualt'", "did you mean 'default'?",
                          "`linohost env list`")


# -- locales ---------------------------------------------------------------------------

def _locale_key(name):
    return name.lower().replace("-", "")


def machine_has(name):
    out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    return _locale_key(name) in {_locale_key(n) for n in out}


#: The locale of this test's sites only: it takes it from the machine for a while,
#: and other tests' sites (Cosi's is de_BE.UTF-8) must keep theirs meanwhile.
LOCALE = "nl_BE.UTF-8"


@pytest.fixture
def dutch_app(host):
    """A settings module in the session's environment: Cosi with LOCALE as its
    site_locale."""
    [site_packages] = (host.root / "envs" / "default").glob("lib/python3*/site-packages")
    pkg = site_packages / "linohost_dutchapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text(
        "from lino_cosi.lib.cosi.settings import *  # noqa\n\n\n"
        f"class Site(Site):  # noqa\n    site_locale = {LOCALE!r}\n")
    yield "linohost_dutchapp.settings"
    shutil.rmtree(pkg)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="generating a locale needs root")
def test_new_generates_the_locale_the_site_asks_for(host, dutch_app):
    """Lino sets its site_locale (Cosi's is de_BE.UTF-8) at every start and warns
    when the machine lacks it: `new` generates it, once."""
    first, name, other = host.unique("loc"), host.unique("loc"), host.unique("loc")
    host("new", first, "--app", dutch_app, "--empty")
    if machine_has(LOCALE):                      # as on a fresh machine
        subprocess.run(["localedef", "--delete-from-archive", "nl_BE.utf8"], check=True)
    assert not machine_has(LOCALE)
    shell = ["--", "shell", "-c", "print(1)"]
    p = host("manage", first, *shell)
    assert f"{LOCALE} : unsupported locale setting" in p.stdout + p.stderr  # the symptom
    p = host("new", name, "--app", dutch_app, "--empty")
    assert p.stderr.count(f"generating locale {LOCALE}") == 1, p.stderr
    assert machine_has(LOCALE)
    assert f"{LOCALE} UTF-8" in Path("/etc/locale.gen").read_text().splitlines()
    for s in (name, first):
        p = host("manage", s, *shell)
        assert p.stdout.strip().splitlines()[-1] == "1", p.stdout
        assert "unsupported locale" not in p.stdout + p.stderr, p.stderr
    p = host("new", other, "--app", dutch_app, "--empty")     # once: the next says nothing
    assert "locale" not in p.stderr, p.stderr
    for s in (first, name, other):
        host("rm", s, "--yes", "--no-archive")


# -- a second host root on the same database servers ---------------------------------------

@pytest.fixture(scope="module")
def other_root(host):
    """A second host root with a public server name, sharing the first one's environment
    (a symlink: building another 1 GB environment would test nothing more)."""
    base = make_root("linohost-other-")
    h = HostRoot(base / "root")
    h.port = free_port()
    h("init", "--port", h.port, "--server-name", "lino.example.org")
    # Its sites get Unix users of their own, not those of the first root's sites.
    cfg = h.root / "linohost.toml"
    cfg.write_text(tomli_w.dumps({**tomllib.loads(cfg.read_text()), "site_user_prefix": "lo2-"}))
    h.root.joinpath("envs").mkdir(exist_ok=True)
    h.root.joinpath("envs", "default").symlink_to(host.root / "envs" / "default")
    yield h
    for s in json.loads(h("list", "--json", check=False).stdout or "[]"):
        h("rm", s["name"], "--yes", "--no-archive", check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def books(host, other_root):
    """Site NAME on PostgreSQL and on MariaDB in both host roots: {engine: NAME}."""
    made = {}
    for engine in ("postgresql", "mysql"):
        name = host.unique(f"books_{engine[:2]}")
        for h in (host, other_root):
            h("new", name, "--app", "cosi", "--db", engine, "--empty")
        made[engine] = name
    yield made
    for name in made.values():
        host("rm", name, "--yes", "--no-archive", check=False)


def db_comment(engine, db):
    if engine == "postgresql":
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as c:
            return c.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                             "WHERE datname = %s", (db,)).fetchone()[0]
    c = pymysql.connect(host="127.0.0.1", user="root")
    try:
        with c.cursor() as cur:
            cur.execute("SELECT schema_comment FROM information_schema.schemata "
                        "WHERE schema_name = %s", (db,))
            return cur.fetchone()[0]
    finally:
        c.close()


@pytest.mark.slow
def test_two_host_roots_each_have_their_site_of_one_name(host, other_root, books):
    for engine, name in books.items():
        names = [json.loads(h("show", name, "--json").stdout)["db_name"]
                 for h in (host, other_root)]
        assert names[0] != names[1] and all(n.endswith("_" + name) for n in names), names
        assert all(len(n) <= 63 for n in names)
        for h, db in zip((host, other_root), names):
            assert db_comment(engine, db) == f"linohost site {name} of host root {h.root}"
            p = h("manage", name, "--", "shell", "-c",
                  "from django.db import connection; print(connection.settings_dict['NAME'])")
            assert p.stdout.strip().splitlines()[-1] == db


def with_top_level_key(text, line):
    """The TOML *text* with *line* added among the top-level keys (before any table)."""
    return line + "\n" + text


@pytest.mark.slow
def test_a_clash_anyway_names_the_owner(host, other_root, books):
    """Another root told to use the first one's prefix: refused, naming the first root."""
    path = other_root.root / "linohost.toml"
    saved = path.read_text()
    name = books["postgresql"]
    prefix = json.loads(host("show", name, "--json").stdout)["db_name"].removesuffix(name)
    try:
        path.write_text(with_top_level_key(saved, f'db_prefix = "{prefix}"'))
        for engine, name in books.items():
            other_root("rm", name, "--yes", "--no-archive")    # free here, taken there
            before = snapshot(other_root)
            p = other_root("new", name, "--app", "cosi", "--db", engine, "--empty",
                           check=False)
            assert_one_error_line(p, 2, "already exists", prefix + name,
                                  f"(linohost site {name} of host root {host.root})",
                                  "db_prefix")
            assert snapshot(other_root) == before
        path.write_text(with_top_level_key(saved, 'db_prefix = "Lino-A"'))
        p = other_root("list", check=False)
        assert_one_error_line(p, 2, "db_prefix", "Lino-A")
    finally:
        path.write_text(saved)


# -- URLs that work on this machine ------------------------------------------------------

def test_landing_page_links_local_and_public_urls():
    from linohost.render.apache import Mount, index_html
    common = dict(server_names=(), project="/r/shop", wsgi="/r/shop/apache/wsgi.py",
                  media="/r/shop/media", static="/r/envs/default/static",
                  python_home="/r/envs/default")
    page = index_html([
        Mount(name="shop", title="Shop", url="http://lino.example.org:8000/shop/",
              url_path="/shop", local_url="http://localhost:8000/shop/", **common),
        Mount(name="here", title="Here", url="http://localhost:8000/here/",
              url_path="/here", **common)], "lino.example.org")
    assert '<a href="http://localhost:8000/shop/">shop</a>' in page
    assert '<a href="http://lino.example.org:8000/shop/">' in page
    assert '<a href="http://localhost:8000/here/">here</a>' in page
    assert page.count("on this machine") == 1



@pytest.mark.slow
def test_public_server_name_also_shows_local_urls(other_root):
    name = other_root.unique("shop")
    p = other_root("new", name, "--app", "cosi", "--empty")
    port = other_root.port
    public, local = (f"http://lino.example.org:{port}/{name}/", f"http://localhost:{port}/{name}/")
    assert p.stderr.splitlines()[-1].endswith(
        f"site {name} ready: {public} (on this machine: {local})"), p.stderr
    server = start_serve(other_root, port)
    try:
        said = f"at http://localhost:{port}/, public name http://lino.example.org:{port}/"
        log = announced(other_root, port, said)
        assert said in log, log
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert f'href="{local}"' in page and f'href="{public}"' in page, page
        r = requests.get(local, timeout=120)
        assert r.status_code == 200 and r.url.startswith(local), (r.status_code, r.url)
    finally:
        assert stop_serve(server) == 0
