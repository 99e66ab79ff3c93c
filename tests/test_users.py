"""One Unix user per site (as root): what a site's own user can and cannot reach.

Site a's code is played by a Python process running as a's user (its uid and gid,
no other group, as linohost runs it): it tries to read b's secrets, database file,
settings and project files, and to log in to b's PostgreSQL and MariaDB databases
with every credential it can read. The same process reading a's own files and
using a's own credentials shows that the attempts could succeed if allowed.
PostgreSQL is a private cluster that requires passwords (the development server
trusts every local connection, which no host can isolate sites on).
"""

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from hoststate import site_pids, wait_for
from runner import host_config, HostRoot, LINOHOST, make_root
from serving import free_port, start_serve, stop_serve, use_backend
from leftovers import assert_one_error_line, assert_site_absent, snapshot

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="per-site users need root")]

PREFIX = "lino-"


def user_of(site):
    return pwd.getpwnam(PREFIX + site)


# -- a PostgreSQL that asks for passwords ------------------------------------------

def _pg_bin():
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
    return versions[-1] / "bin"


@pytest.fixture(scope="module")
def scram_postgres():
    """A private PostgreSQL cluster, scram-sha-256 for everyone: {port, password}."""
    base = Path(tempfile.mkdtemp(prefix="linohost-pg-"))
    shutil.chown(base, "postgres", "postgres")
    password = "admin-" + os.urandom(8).hex()
    (base / "pw").write_text(password + "\n")
    shutil.chown(base / "pw", "postgres", "postgres")
    port = free_port()
    pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*pg, _pg_bin() / "initdb", "-D", base / "data", "-U", "postgres",
                    "--auth=scram-sha-256", f"--pwfile={base / 'pw'}"],
                   check=True, capture_output=True)
    subprocess.run([*pg, _pg_bin() / "pg_ctl", "-D", base / "data", "-l", base / "log", "-w",
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield {"port": port, "password": password}
    finally:
        subprocess.run([*pg, _pg_bin() / "pg_ctl", "-D", base / "data", "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sites(host, scram_postgres):
    """{role: site name}: a and b on PostgreSQL (the private cluster) and on MariaDB,
    and b on SQLite. The host config names the private cluster only while these are
    made and removed: other sites stay on the usual server."""
    names = {"a_pg": host.unique("ua"), "b_pg": host.unique("ub"),
             "a_my": host.unique("ua"), "b_my": host.unique("ub"), "b_sq": host.unique("ub")}
    pg = {"postgresql.port": scram_postgres["port"],
          "postgresql.admin_password": scram_postgres["password"]}
    try:
        for role, name in names.items():
            db = {"pg": "postgresql", "my": "mysql", "sq": "sqlite"}[role[2:]]
            with host_config(host, **pg):
                host("new", name, "--app", "cosi", "--db", db, "--empty")
        yield names
    finally:
        with host_config(host, **pg):
            for name in names.values():
                host("rm", name, "--yes", "--no-archive", check=False)
    for name in names.values():
        assert_site_absent(host, name)


def as_user_of(host, site, code):
    """Run Python *code* as *site*'s user with its environment's Python, as linohost
    runs site code; return what it prints as JSON."""
    pw = user_of(site)
    python = host.root / "envs" / "default" / "bin" / "python"
    p = subprocess.run([python, "-c", code], user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                       cwd="/", capture_output=True, text=True, timeout=60,
                       env={"PATH": os.environ["PATH"], "HOME": pw.pw_dir})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


READ = """
import json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        out[path] = "read"
    except PermissionError:
        out[path] = "denied"
print(json.dumps(out))
"""


def reads(host, site, paths):
    return as_user_of(host, site, READ.replace("sys.argv[1:]", repr([str(p) for p in paths])))


def private_files(host, site):
    """What of *site* no other site may read (or list)."""
    root, d = host.root, host.root / site
    return [root / "secrets" / f"key-{site}", d, d / "settings.py", d / "manage.py",
            d / "__init__.py", d / "apache" / "wsgi.py", d / "media", d / "config",
            root / "home" / site]


def test_each_site_runs_as_its_own_system_user(host, sites):
    for name in sites.values():
        pw = user_of(name)
        # from the host's own range (site_ids), never Debian's system range 100-999
        assert 70000 <= pw.pw_uid <= 99999 and pw.pw_gid == pw.pw_uid
        assert pw.pw_shell == "/usr/sbin/nologin"
        assert pw.pw_dir == str(host.root / "home" / name)
        # linohost runs its commands as it
        out = host("manage", name, "--", "shell", "-c",
                   "import os; print('IDS', os.getuid(), os.getgid(), os.getgroups(), "
                   "os.environ['HOME'], oct(os.umask(0)))").stdout
        assert f"IDS {pw.pw_uid} {pw.pw_gid} [] {pw.pw_dir} 0o27" in out
    uids = {user_of(n).pw_uid for n in sites.values()}
    assert len(uids) == len(sites)


def test_a_reads_its_own_files_and_nothing_of_b(host, sites):
    a = sites["a_pg"]
    own = [*private_files(host, a), host.root / "secrets" / f"db-{a}"]
    assert set(reads(host, a, own).values()) == {"read"}
    for b in (sites["b_pg"], sites["b_my"], sites["b_sq"]):
        theirs = private_files(host, b)
        if b == sites["b_sq"]:
            theirs.append(host.root / b / "default.db")
        else:
            theirs.append(host.root / "secrets" / f"db-{b}")
        got = reads(host, a, theirs)
        assert set(got.values()) == {"denied"}, got
    # nor anything of the host's own secrets, nor its config (admin passwords)
    got = reads(host, a, [host.root / "secrets" / "master.key", host.root / "secrets",
                          host.root / "linohost.toml", host.root / "logs", host.root / "run"])
    assert set(got.values()) == {"denied"}, got
    # what every site must read: the environment and the shared hook
    got = reads(host, a, [host.root / "local" / "djangosite_local.py",
                          host.root / "envs" / "default" / "bin" / "python"])
    assert set(got.values()) == {"read"}, got


def test_a_has_its_own_secret_key_and_not_the_master_key(host, sites):
    a, b = sites["a_pg"], sites["b_pg"]
    keys = {}
    for s in (a, b):
        out = host("manage", s, "--", "shell", "-c",
                   "from django.conf import settings; print('KEY', settings.SECRET_KEY)").stdout
        keys[s] = [ln[4:] for ln in out.splitlines() if ln.startswith("KEY ")][0]
        path = host.root / "secrets" / f"key-{s}"
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user_of(s).pw_uid, 0o600)
        assert path.read_text().strip() == keys[s]
    assert keys[a] != keys[b]
    master = host.root / "secrets" / "master.key"
    assert (master.stat().st_uid, stat.S_IMODE(master.stat().st_mode)) == (0, 0o600)


CONNECT = """
import json, psycopg, pymysql
out = {}
def pg(user, password, db):
    try:
        psycopg.connect(host="127.0.0.1", port=PG_PORT, user=user, password=password,
                        dbname=db, connect_timeout=5).close()
        return "connected"
    except psycopg.Error:
        return "refused"
def my(user, password, db):
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user=user, password=password,
                        database=db, connect_timeout=5).close()
        return "connected"
    except pymysql.err.MySQLError:
        return "refused"
"""


def test_a_cannot_log_in_to_b_database(host, sites, scram_postgres):
    """With every credential a can read (its own password, no password) and every user
    name it can guess (b's, the admin's), only a's own database opens."""
    def secret(s):
        return (host.root / "secrets" / f"db-{s}").read_text().strip()
    tries = {}
    for eng, fn in (("pg", "pg"), ("my", "my")):
        a, b = sites[f"a_{eng}"], sites[f"b_{eng}"]
        pa = secret(a)
        da, db = host.db_name(a), host.db_name(b)       # database and user names
        tries.update({
            f"{eng}: a's user, a's database": (fn, da, pa, da),
            f"{eng}: a's user, b's database": (fn, da, pa, db),
            f"{eng}: b's user, a's password": (fn, db, pa, db),
            f"{eng}: b's user, no password": (fn, db, "", db),
        })
    tries["pg: admin, no password"] = ("pg", "postgres", "", host.db_name(sites["b_pg"]))
    tries["pg: admin, a's password"] = ("pg", "postgres", secret(sites["a_pg"]), "postgres")
    code = CONNECT.replace("PG_PORT", str(scram_postgres["port"])) + "".join(
        f"out[{k!r}] = {f}({u!r}, {p!r}, {d!r})\n" for k, (f, u, p, d) in tries.items()
    ) + "print(json.dumps(out))\n"
    got = as_user_of(host, sites["a_pg"], code)
    want = {k: "connected" if k.endswith("a's user, a's database") else "refused" for k in tries}
    assert got == want


# -- the web server reads media and static files only -------------------------------

def daemon_uid(host, site):
    """The uid of *site*'s running process (mod_wsgi daemon or keeper worker)."""
    pid = site_pids(host).get(site)
    return os.stat(f"/proc/{pid}").st_uid if pid else None


def test_apache_serves_media_and_static_and_each_daemon_runs_as_its_site(
        host, server, cosi_sites):
    """On the session's sites: this module's own would be made twice more (pytest runs
    the tests of the session's server, under each backend, before the others)."""
    a, b = cosi_sites["sqlite"], cosi_sites["postgresql"]
    for s in (a, b):
        # a file the site itself writes into its media/ (umask 027: not for others)
        host("manage", s, "--", "shell", "-c",
             f"from django.conf import settings; from pathlib import Path; "
             f"Path(settings.MEDIA_ROOT, 'probe.txt').write_text('media of {s}')")
    wait_for("serve to see the new sites",
             lambda: requests.get(server.url(a)).status_code == 200, timeout=60, every=1)
    for s in (a, b):
        probe = host.root / s / "media" / "probe.txt"
        assert stat.S_IMODE(probe.stat().st_mode) == 0o640
        r = requests.get(server.url(s, "media/probe.txt"))
        assert (r.status_code, r.text) == (200, f"media of {s}")
        assert requests.get(server.url(s)).status_code == 200
        assert daemon_uid(host, s) == user_of(s).pw_uid
    # another site's user cannot read it, though the web server can
    assert reads(host, b, [host.root / a / "media" / "probe.txt"]) == {
        str(host.root / a / "media" / "probe.txt"): "denied"}
    static = Path(host.root / "envs" / "default" / "static")
    some = next(p for p in sorted(static.rglob("*.js")) if p.is_file())
    st = some.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o004
    r = requests.get(server.url(a, f"static/{some.relative_to(static)}"))
    assert r.status_code == 200 and r.content == some.read_bytes()


# -- made and removed with its site ------------------------------------------------

def test_rm_removes_the_user_and_its_home(host):
    name = host.unique("urm")
    host("new", name, "--app", "cosi", "--empty")
    assert user_of(name) and (host.root / "home" / name).is_dir()
    p = host("rm", name, "--yes", "--no-archive")
    assert f"Unix user and group {PREFIX}{name}" in p.stderr
    assert_site_absent(host, name)          # also: no user, no HOME


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_new_leaves_no_user(host, sig):
    """Ctrl-C rolls back at once; a kill is repaired by the next command."""
    name = host.unique("ukill")
    before = snapshot(host)
    env = {**os.environ, "LINOHOST_ROOT": str(host.root)}
    proc = subprocess.Popen([*LINOHOST, "new", name, "--app", "cosi", "--empty"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def half_way():
        """Its user made, its project begun: what is left takes a second or more (the
        data steps; its "initialising" line came too late under a running keeper,
        whose warm steps can end before a signal sent then)."""
        try:
            user_of(name)
        except KeyError:
            return proc.poll() is not None
        return (host.root / name).is_dir() or proc.poll() is not None
    try:
        wait_for("its user and project directory", half_way, timeout=120, every=0.01)
        assert proc.poll() is None, "new ended before it was interrupted"
        proc.send_signal(sig)
        proc.wait(120)
    finally:
        proc.kill()
        proc.wait()
    if sig == signal.SIGKILL:
        assert "repairing an interrupted new" in host("list").stderr
    assert snapshot(host) == before, snapshot(host) ^ before
    assert_site_absent(host, name)


# -- ids from the host's range ------------------------------------------------------

def _free_run(start, length):
    """The first id >= *start* such that it and the next *length* - 1 are nobody's."""
    import grp
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    n = start
    while any(i in used for i in range(n, n + length)):
        n += length
    return n


def test_site_ids_come_from_the_hosts_range_and_are_never_shared(host):
    first = _free_run(91000 + (os.getpid() % 500) * 8, 4)
    taken = "lhtaken" + str(os.getpid() % 10000)
    subprocess.run(["groupadd", "--gid", str(first + 1), taken], check=True)
    subprocess.run(["useradd", "--system", "--uid", str(first + 1), "--gid", str(first + 1),
                    "--no-create-home", taken], check=True, capture_output=True)
    made = []
    try:
        with host_config(host, site_ids=f"{first}-{first + 3}"):
            for _ in range(3):
                made.append(host.unique("rng"))
                host("new", made[-1], "--app", "cosi", "--empty")
            ids = [(user_of(n).pw_uid, user_of(n).pw_gid) for n in made]
            assert ids == [(first, first), (first + 2, first + 2), (first + 3, first + 3)]
            p = host("show", made[0], "--json")
            assert json.loads(p.stdout)["site_ids_left"] == 0
            before = snapshot(host)
            fourth = host.unique("rng")
            p = host("new", fourth, "--app", "cosi", "--empty", check=False)
            assert_one_error_line(p, 2, "no id is left", f"{first}-{first + 3}")
            assert snapshot(host) == before
            assert_site_absent(host, fourth)
        with host_config(host, site_ids="900-1100"):           # not linohost's to take
            p = host("new", host.unique("rng"), "--app", "cosi", "--empty", check=False)
            assert_one_error_line(p, 2, "overlaps", "system users")
            assert snapshot(host) == before
    finally:
        for n in made:
            host("rm", n, "--yes", "--no-archive", check=False)
        subprocess.run(["userdel", taken], check=False)


#: Gives site users of the host root argv[1] to the names argv[2:], as `new` does.
ADD_USERS = """
import sys
from linohost.apply import users
from linohost.apply.context import Context
from linohost.apply.system import System
from linohost.model.host import Host
host = Host.open(sys.argv[1])
ctx = Context(host, System(host.cfg, host.home_dir))
for name in sys.argv[2:]:
    print(name, users.add_user(ctx, name), flush=True)
"""


def test_two_host_roots_giving_ids_at_once_never_share_one(bare):
    """Two host roots of one machine with one range make site users at the same moment
    (groupadd checks that an id is free before it locks /etc/group): every user and
    group gets an id of its own, and each id names one group."""
    import grp
    first = _free_run(93000 + (os.getpid() % 400) * 16, 16)   # within 70000-99999
    other = HostRoot(make_root("linohost-ids2-") / "root")
    other("init")
    names = {h: [f"par{os.getpid() % 10000}{tag}{i}" for i in range(7)]
             for h, tag in ((bare, "a"), (other, "b"))}
    ids_range = f"{first}-{first + 15}"
    try:
        with host_config(bare, site_ids=ids_range), host_config(other, site_ids=ids_range):
            procs = [subprocess.Popen([sys.executable, "-c", ADD_USERS, str(h.root), *ns],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for h, ns in names.items()]
            outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err[-800:] for _, err in outs]
        made = [n for ns in names.values() for n in ns]
        ids = {n: (user_of(n).pw_uid, user_of(n).pw_gid) for n in made}
        assert all(uid == gid and first <= uid <= first + 15 for uid, gid in ids.values())
        assert len(set(ids.values())) == len(made), ids
        for n, (_, gid) in ids.items():
            assert [g.gr_name for g in grp.getgrall() if g.gr_gid == gid] == [PREFIX + n]
    finally:
        for n in (n for ns in names.values() for n in ns):
            subprocess.run(["userdel", PREFIX + n], capture_output=True)
            subprocess.run(["groupdel", PREFIX + n], capture_output=True)
        shutil.rmtree(other.root.parent, ignore_errors=True)


def _as_an_earlier_linohost_made_it(host, name):
    """Give site *name*'s user and group an id of Debian's system range, and its files
    with them; (that id, the trees its files are in)."""
    pw = user_of(name)
    old = next(i for i in range(999, 100, -1) if _free_run(i, 1) == i)
    user = PREFIX + name
    subprocess.run(["groupmod", "--gid", str(old), user], check=True)
    subprocess.run(["usermod", "--uid", str(old), "--gid", str(old), user], check=True)
    tops = [host.root / name, host.root / "home" / name,
            *(host.root / "secrets").glob(f"*-{name}")]
    for top in tops:
        subprocess.run(["chown", "-hR", f"--from={pw.pw_uid}", str(old), top], check=True)
        subprocess.run(["chown", "-hR", f"--from=:{pw.pw_gid}", f":{old}", top], check=True)
    return old, tops


def _owners(tops):
    """{path: (uid, gid)} of every file under *tops*."""
    out = {}
    for top in tops:
        for path in [top, *top.rglob("*")]:
            st = path.lstat()
            out[path] = (st.st_uid, st.st_gid)
    return out


@pytest.fixture(scope="module")
def old_root(host):
    """A host root of its own (no server of the session's serves it), sharing the
    session's environment (a symlink)."""
    base = make_root("linohost-ids-")
    h = HostRoot(base / "root")
    h("init", "--port", free_port())
    h.root.joinpath("envs").mkdir(exist_ok=True)
    h.root.joinpath("envs", "default").symlink_to(host.root / "envs" / "default")
    yield h
    for s in json.loads(h("list", "--json", check=False).stdout or "[]"):
        h("rm", s["name"], "--yes", "--no-archive", check=False)
    shutil.rmtree(base, ignore_errors=True)


def test_a_site_moves_from_the_system_range_into_the_range_and_still_serves(host, kserver):
    """Under the keeper its worker is let go while it moves."""
    name = host.unique("mv")
    host("new", name, "--app", "cosi", "--empty")
    try:
        old, tops = _as_an_earlier_linohost_made_it(host, name)
        assert requests.get(kserver.url(name), timeout=300).status_code == 200
        wait_for("its worker", lambda: site_pids(host).get(name))
        p = host("move-ids", name)
        new = user_of(name).pw_uid
        assert 70000 <= new <= 99999 and user_of(name).pw_gid == new, p.stderr
        assert f"moved from id {old} to {new}" in p.stderr
        assert old not in {i for ids in _owners(tops).values() for i in ids}
        media = (host.root / name / "media").stat()
        assert media.st_uid == new and media.st_gid == pwd.getpwnam("www-data").pw_gid
        assert requests.get(kserver.url(name), timeout=300).status_code == 200
        pid = wait_for("its new worker", lambda: site_pids(host).get(name))
        assert Path(f"/proc/{pid}").stat().st_uid == new
        assert "already has an id" in host("move-ids", name).stderr      # nothing to do
    finally:
        host("rm", name, "--yes", "--no-archive", check=False)


def test_under_mod_wsgi_a_site_moves_once_apache_stopped(old_root):
    """Its daemon never sleeps: refused while served (exit 2, nothing changed); moved
    once serve stopped, it serves again as its new ids."""
    h = old_root
    use_backend(h, "mod_wsgi")
    name = h.unique("mvw")
    h("new", name, "--app", "cosi", "--empty")
    try:
        old, tops = _as_an_earlier_linohost_made_it(h, name)
        before = _owners(tops)
        server = start_serve(h, free_port())
        try:
            assert requests.get(server.url(name), timeout=300).status_code == 200
            wait_for("its daemon", lambda: site_pids(h).get(name))
            p = h("move-ids", name, check=False)
            assert_one_error_line(p, 2, "served by mod_wsgi", name, "stop")
            assert user_of(name).pw_uid == old and _owners(tops) == before
        finally:
            stop_serve(server)
        p = h("move-ids", name)
        new = user_of(name).pw_uid
        assert 70000 <= new <= 99999 and f"moved from id {old} to {new}" in p.stderr
        assert old not in {i for ids in _owners(tops).values() for i in ids}
        server = start_serve(h, free_port())
        try:
            assert requests.get(server.url(name), timeout=300).status_code == 200
            pid = wait_for("its daemon", lambda: site_pids(h).get(name))
            assert Path(f"/proc/{pid}").stat().st_uid == new
        finally:
            stop_serve(server)
    finally:
        h("rm", name, "--yes", "--no-archive", check=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_move_is_rolled_back(old_root, sig):
    """Ctrl-C while its files are given to the new ids undoes the move at once; a kill
    is undone by the next command: the old ids, every file as it was."""
    import grp
    h = old_root
    name = h.unique("mvkill")
    h("new", name, "--app", "cosi", "--empty")
    try:
        old, tops = _as_an_earlier_linohost_made_it(h, name)
        bulk = h.root / name / "media" / "uploads" / "bulk"        # a long walk to cut
        bulk.mkdir(parents=True)
        for i in range(40000):
            (bulk / str(i)).touch()
        subprocess.run(["chown", "-R", f"{old}:{old}", bulk.parent], check=True)
        before = _owners(tops)
        env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
        proc = subprocess.Popen([*LINOHOST, "move-ids", name], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            wait_for("its project given to the new id",
                     lambda: (h.root / name).stat().st_uid != old or proc.poll() is not None,
                     every=0.002)
            assert proc.poll() is None, "move-ids ended before it was interrupted"
            assert (bulk / "39999").stat().st_uid == old, "its walk ended too soon"
            proc.send_signal(sig)
            proc.wait(120)
        finally:
            proc.kill()
            proc.wait()
        if sig == signal.SIGKILL:
            assert "repairing an interrupted move-ids" in h("list").stderr
        else:
            assert proc.returncode == 130, proc.stderr.read()
        assert (user_of(name).pw_uid, user_of(name).pw_gid) == (old, old)
        assert grp.getgrnam(PREFIX + name).gr_gid == old
        assert _owners(tops) == before
    finally:
        h("rm", name, "--yes", "--no-archive", check=False)


def test_a_move_killed_between_groupmod_and_usermod_is_undone(old_root):
    """The kill came after move-ids renumbered the group, before the user: the next
    command gives the group its old id back (and the user its primary group)."""
    import grp
    from linohost.apply.journal import Journal
    from linohost.model.host import Host
    h = old_root
    name = h.unique("mvcut")
    h("new", name, "--app", "cosi", "--empty")
    try:
        old, tops = _as_an_earlier_linohost_made_it(h, name)
        before = _owners(tops)
        new = _free_run(95000 + (os.getpid() % 500) * 8, 1)
        journal = Journal(Host.open(h.root), "move-ids", name).start()    # as move-ids does
        journal.record("site_ids", site=name, user=PREFIX + name, uid=old, gid=old, new=new)
        subprocess.run(["groupmod", "--gid", str(new), PREFIX + name], check=True)
        assert user_of(name).pw_gid == new                  # then the kill
        assert "repairing an interrupted move-ids" in h("list").stderr
        assert grp.getgrnam(PREFIX + name).gr_gid == old
        assert (user_of(name).pw_uid, user_of(name).pw_gid) == (old, old)
        assert _owners(tops) == before
    finally:
        h("rm", name, "--yes", "--no-archive", check=False)


def test_too_long_for_a_user_name_is_refused(host):
    with host_config(host, site_user_prefix="linohost-site-user-"):   # 19 + 14 > 32
        before = snapshot(host)
        p = host("new", "a" * 14, "--app", "cosi", "--empty", check=False)
        assert_one_error_line(p, 2, "too long for its Unix user", "at most 13 characters")
        assert snapshot(host) == before


# -- migrating a host made before sites had their own users --------------------------

def test_init_migrates_an_old_host(host):
    """A site as an older linohost left it (www-data's, no user, no key file): `init`
    says what it changes, changes it, and the second time has nothing to say."""
    name = host.unique("umig")
    host("new", name, "--app", "cosi", "--empty")
    secrets = (host.root / "secrets", host.root / "secrets" / "master.key")
    were = [(p, p.stat()) for p in secrets]
    try:
        project, home = host.root / name, host.root / "home" / name
        www = pwd.getpwnam("www-data")
        subprocess.run(["chown", "-R", "www-data:www-data", project], check=True)
        for path in secrets:
            os.chown(path, www.pw_uid, www.pw_gid)
        project.chmod(0o755)
        (host.root / "secrets").chmod(0o700)
        (host.root / "secrets" / f"key-{name}").unlink()
        shutil.rmtree(home)
        # --force: under mod_wsgi, Apache already runs the site's daemon as its user
        subprocess.run(["userdel", "--force", PREFIX + name], check=True)
        p = host("init")
        plan = p.stderr
        assert f"create Unix user {PREFIX}{name}" in plan
        assert f"{project}: chown to {PREFIX}{name}" in plan
        assert f"key-{name}: the SECRET_KEY of {name}" in plan
        assert "master.key: readable by root only" in plan
        assert plan.index("create Unix user") < plan.index("done:")
        pw = user_of(name)
        assert (project.stat().st_uid, project.stat().st_gid) == (pw.pw_uid, www.pw_gid)
        assert (project / "default.db").stat().st_uid == pw.pw_uid
        assert stat.S_IMODE((project / "default.db").stat().st_mode) & 0o007 == 0
        assert home.stat().st_uid == pw.pw_uid
        assert host("manage", name, "--", "check").returncode == 0
        again = host("init").stderr
        assert "changes for one Unix user per site" not in again, again
    finally:
        for path, st in were:               # whatever happened, later tests need these
            os.chown(path, st.st_uid, st.st_gid)
            path.chmod(stat.S_IMODE(st.st_mode))
        host("rm", name, "--yes", "--no-archive", check=False)
    assert_site_absent(host, name)
