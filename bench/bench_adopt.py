"""`linohost adopt` against `linohost new` of the same app (issue 19), side by side.

For Cosi and Noi, in one host root with the keeper running (as its service does):

  * `linohost new` of a demo site, twice (timed: the first builds the app's demo
    template with Lino's prep; the second, from it, is what adopt is compared with);
  * a project of its own (its settings.py and manage.py, the environment beside it),
    its demo data made by its own `manage.py prep`: on SQLite, adopted with
    `--db copy`; on PostgreSQL, a database and user of its own, adopted with
    `--db move` (the user is taken over);
  * while each adoption runs, the project is served by its own process (waitress, as
    a getlino site's uwsgi would be) and a client signed in as robin asks it for a
    table every 50 ms: its failed requests are counted.

The adopted site's answers are checked by adopt itself (the same rows per table, the
same answers to its JSON API): a run that prints times did pass those checks.

Usage: python bench/bench_adopt.py [--apps cosi,noi]
"""

import argparse
import os
import secrets
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


class Watched:
    """The project served by waitress; a client signed in as robin asks it for a
    table every 50 ms until stop(): (requests, failed)."""

    def __init__(self, python, d):
        self.port = free_port()
        self.proc = subprocess.Popen([python, "-m", "waitress", f"--listen=127.0.0.1:{self.port}",
                                      "wsgi:application"], cwd=d, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
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
        self.asked = self.failed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._ask)
        self.thread.start()

    def _ask(self):
        while not self.done.is_set():
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
        self.proc.terminate()
        self.proc.wait()
        return self.asked, self.failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", default="cosi,noi")
    a = ap.parse_args()
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
                               capture_output=True)
            for mode, src in (("copy", d), ("move", e)):
                print(f"{app}: adopt --db {mode}", flush=True)
                watched = Watched(python, src)
                t, p = h("adopt", src, "--as", f"{app}_{mode}", "--db", mode, "--yes",
                         check=False)
                asked, failed = watched.stop()
                if p.returncode:
                    raise SystemExit(f"adopt {src} failed:\n{p.stderr}")
                rows.append((app, f"--db {mode}", "sqlite" if mode == "copy" else "postgresql",
                             f"{t:.1f}", f"{t_first:.1f}", f"{t_new:.1f}", f"{t / t_new:.1f}",
                             asked, failed))
        print()
        table(rows, ["app", "adopt", "source db", "adopt s", "first new s", "new s",
                     "adopt/new", "requests to the source", "failed"])
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
