"""`linohost adopt` against `linohost new` of the same app (issue 19), side by side.

For Cosi and Noi, in one host root with the keeper running (as its service does):

  * `linohost new` of a demo site, twice (timed: the first builds the app's demo
    template with Lino's prep; the second, from it, is what adopt is compared with);
  * a project of its own (its settings.py and manage.py, the environment beside it),
    its demo data made by its own `manage.py prep`: on SQLite, adopted with
    `--db copy`; on PostgreSQL, a database and user of its own, adopted with
    `--db move` (the user is taken over);
  * while each adoption runs, the project is served by its own process (waitress, as
    a getlino site's uwsgi would be; with ``--source-server apache`` by Debian's
    Apache and mod_wsgi through a vhost in ``sites-enabled`` as getlino writes it, in
    a copy of /etc/apache2 given to adopt as APACHE_CONFDIR, so that adopt stops it
    with a graceful reload once the new site is checked) and a client signed in as
    robin asks it for a table every 50 ms: its failed requests are counted, and the
    reloads of that Apache adopt made.

The adopted site's answers are checked by adopt itself (the same rows per table, the
same answers to its JSON API): a run that prints times did pass those checks.

Usage: python bench/bench_adopt.py [--apps cosi,noi] [--source-server waitress|apache]
"""

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench_serve import stop
from common import LINOHOST, BenchHost, table

SETTINGS = """from {module} import *


class Site(Site):
    title = "{title}"
    languages = "en"
    default_ui = "lino_react.react"


SITE = Site(globals())
SECRET_KEY = "{key}"
DATABASES = {{"default": {database}}}
"""
MANAGE = """import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""
WSGI = """import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
"""
MODULES = {"cosi": "lino_cosi.lib.cosi.settings", "noi": "lino_noi.lib.noi.settings"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project(base, name, app, database):
    d = base / name
    (d / "media").mkdir(parents=True)
    (d / "manage.py").write_text(MANAGE)
    (d / "wsgi.py").write_text(WSGI)
    (d / "settings.py").write_text(SETTINGS.format(
        module=MODULES[app], title=name, key=secrets.token_urlsafe(50), database=database))
    return d


def pg(sql, *args, db="postgres"):
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=db, autocommit=True) as c:
        c.execute(sql, args)


#: The vhost of a source served by Apache (as getlino's, on a port of its own).
VHOST = """\
<VirtualHost 127.0.0.1:{port}>
    WSGIDaemonProcess {name} threads=15 python-home={env} python-path={project}
    WSGIProcessGroup {name}
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIScriptAlias / {project}/wsgi.py
    <Directory {project}>
        Require all granted
    </Directory>
</VirtualHost>
"""


class Waitress:
    """The project *d* served by waitress on *port*."""

    def __init__(self, python, d, port):
        self.proc = subprocess.Popen([python, "-m", "waitress", f"--listen=127.0.0.1:{port}",
                                      "wsgi:application"], cwd=d, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.env = {}

    def serving(self):
        return True

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Apache:
    """The project *d* served by Debian's Apache through its vhost in the sites-enabled
    of a copy of /etc/apache2 (self.env: what tells adopt and apache2ctl so), by
    www-data, who owns the project as on a getlino host."""

    def __init__(self, python, d, port):
        if subprocess.run(["pgrep", "-x", "apache2"], capture_output=True).returncode == 0:
            raise SystemExit("an Apache runs already: --source-server apache needs its pid file")
        self.conf = d.parent / f"apache2-{d.name}"
        shutil.copytree("/etc/apache2", self.conf, symlinks=True)
        (self.conf / "ports.conf").write_text(f"ServerName localhost\nListen 127.0.0.1:{port}\n")
        for link in (self.conf / "sites-enabled").iterdir():
            link.unlink()
        if not (self.conf / "mods-enabled" / "wsgi.load").exists():
            for f in ("wsgi.load", "wsgi.conf"):
                (self.conf / "mods-enabled" / f).symlink_to(f"../mods-available/{f}")
        (self.conf / "sites-available" / f"{d.name}.conf").write_text(VHOST.format(
            port=port, name=d.name, env=Path(python).parent.parent, project=d))
        self.link = self.conf / "sites-enabled" / f"{d.name}.conf"
        self.link.symlink_to(f"../sites-available/{d.name}.conf")
        subprocess.run(["chown", "-R", "www-data:www-data", d], check=True)
        self.env = {"APACHE_CONFDIR": str(self.conf)}
        subprocess.run(["apache2ctl", "start"], env={**os.environ, **self.env}, check=True)

    def serving(self):
        """Until adopt takes its vhost away (the switch: then a graceful reload)."""
        return os.path.lexists(self.link)

    def stop(self):
        subprocess.run(["apache2ctl", "stop"], env={**os.environ, **self.env})
        deadline = time.monotonic() + 30
        while subprocess.run(["pgrep", "-x", "apache2"], capture_output=True).returncode == 0 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.conf, ignore_errors=True)


class Watched:
    """The project served by *server* (Waitress, Apache); a client signed in as robin
    asks it for a table every 50 ms until stop() or the switch (the server no longer
    serves it): (requests, failed)."""

    def __init__(self, python, d, server=Waitress):
        self.port = free_port()
        self.server = server(python, d, self.port)
        try:
            self._sign_in(d)
        except BaseException:
            self.server.stop()
            raise
        self.asked = self.failed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._ask)
        self.thread.start()

    def _sign_in(self, d):
        self.url = f"http://127.0.0.1:{self.port}/"
        self.session = requests.Session()
        deadline, said = time.monotonic() + 120, "no answer"
        while True:
            try:       # as the browser does: the page gives the CSRF cookie, then sign in
                self.session.get(self.url, timeout=60)
                r = self.session.post(self.url + "api/about/About/-99998", timeout=60, data={
                    "an": "sign_in", "username": "robin", "password": "1234"},
                    headers={"X-CSRFToken": self.session.cookies.get("csrftoken", "")})
                said = f"{r.status_code} {r.text[:200]}"
                if r.ok and r.json()["success"]:
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{d}: its own server does not sign robin in: {said}")
            time.sleep(0.5)

    def _ask(self):
        while not self.done.is_set() and self.server.serving():
            self.asked += 1
            try:
                r = self.session.get(self.url + "api/contacts/Persons",
                                     params={"fmt": "json", "limit": 5}, timeout=30)
                ok = r.status_code == 200 and "rows" in r.json()
            except (requests.RequestException, ValueError):
                ok = False
            self.failed += not ok
            time.sleep(0.05)

    def stop(self):
        self.done.set()
        self.thread.join()
        self.server.stop()
        return self.asked, self.failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", default="cosi,noi")
    ap.add_argument("--source-server", choices=("waitress", "apache"), default="waitress")
    a = ap.parse_args()
    server = Apache if a.source_server == "apache" else Waitress
    h = BenchHost()
    base = Path(tempfile.mkdtemp(prefix="linohost-bench-own-", dir="/tmp"))
    base.chmod(0o755)
    keeper, dbs, rows = None, [], []
    try:
        h("init", "--port", "18196")
        print("building the environment ...", flush=True)
        h("env", "create", "default", "cosi", "noi")
        python = str(h.root / "envs" / "default" / "bin" / "python")
        (base / "env").symlink_to(h.root / "envs" / "default")
        keeper = subprocess.Popen([*LINOHOST, "keeper"], stdin=subprocess.DEVNULL,
                                  env={**os.environ, "LINOHOST_ROOT": str(h.root)},
                                  stdout=open(h.base / "keeper.log", "a"),
                                  stderr=subprocess.STDOUT)
        for app in a.apps.split(","):
            print(f"{app}: new (the first builds the app's demo template), new again", flush=True)
            t_first, _ = h("new", f"{app}_new", "--app", app)
            t_new, _ = h("new", f"{app}_new2", "--app", app)
            # on SQLite; adopted with --db copy
            d = project(base, f"{app}_lite", app, '{"ENGINE": "django.db.backends.sqlite3", '
                                                  '"NAME": str(SITE.site_dir / "default.db")}')
            # on PostgreSQL, a database and user of its own; adopted with --db move
            db, password = f"lhbench_{app}", secrets.token_hex(12)
            pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            pg(f'DROP ROLE IF EXISTS "{db}"')
            pg(f"CREATE ROLE \"{db}\" LOGIN PASSWORD '{password}'")
            pg(f'CREATE DATABASE "{db}" OWNER "{db}"')
            dbs.append(db)
            e = project(base, f"{app}_pg", app, repr({
                "ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": "5432",
                "NAME": db, "USER": db, "PASSWORD": password}))
            for src in (d, e):          # its demo data, made where it is (its own URLs)
                print(f"{app}: prep of {src.name} ...", flush=True)
                subprocess.run([python, "manage.py", "prep", "--noinput"], cwd=src, check=True,
                               capture_output=True,     # (prep keeps media.bak in TMPDIR)
                               env={**os.environ, "TMPDIR": str(base)})
            for mode, src in (("copy", d), ("move", e)):
                print(f"{app}: adopt --db {mode}", flush=True)
                watched = Watched(python, src, server)
                try:
                    t, p = h("adopt", src, "--as", f"{app}_{mode}", "--db", mode, "--yes",
                             check=False, env=watched.server.env)
                finally:
                    asked, failed = watched.stop()
                if p.returncode:
                    raise SystemExit(f"adopt {src} failed:\n{p.stderr}")
                rows.append((app, f"--db {mode}", "sqlite" if mode == "copy" else "postgresql",
                             f"{t:.1f}", f"{t_first:.1f}", f"{t_new:.1f}", f"{t / t_new:.1f}",
                             asked, failed, p.stderr.count("Apache reloaded gracefully")))
        print()
        table(rows, ["app", "adopt", "source db", "adopt s", "first new s", "new s",
                     "adopt/new", f"requests to the source ({a.source_server})", "failed",
                     "its reloads"])
    finally:
        if keeper:
            stop(keeper)
        h.close()
        for db in dbs:
            pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            pg(f'DROP ROLE IF EXISTS "{db}"')
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
