"""A zygote: runs *inside* a site environment (python -c), forks workers warm.

The keeper starts one per site group (the sites that share environment, app,
languages, front end, URL layout and database engine) with a neutral *template*
project of that group: a site of its own with throwaway secrets, no data and no
database connection. The zygote does Lino's whole start for the template
(imports, ``django.setup()``, Lino's start-up, the modules a first request
imports), closes what must not be shared, freezes its objects for the garbage
collector (``gc.freeze()``: their pages stay shared with every child) and waits.

For each request of the keeper (a datagram on LINOHOST_ZYGOTE_FD with the
site's listening socket, its status pipe and its log file) it forks twice: the
worker is re-parented to the keeper (a child subreaper), which supervises it as
any other worker. The worker drops to the site's user, closes every descriptor
of the zygote, reseeds its random state and *becomes its site*
(:func:`retarget`): it imports the site's own settings module (a new ``Site``
object, cheap with everything imported), compares it with the template's as it
was before its start-up, and

- if they differ in anything but what a worker re-derives (paths, names, URL
  prefix, title, secrets, database), exits with code 4 ("inexact", and why on its
  status pipe): the keeper starts that site plainly and says so in ``status``;
- else copies the site's values into the running Site, its plugins and Django's
  settings, and redoes what Lino and Django derived from them at start-up.

Then it serves the site's own apache/wsgi.py with :mod:`worker`'s ``serve``.
Linohost ships this file; it imports nothing of linohost.
"""
import gc
import importlib
import json
import os
import random
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import linohost_protocol as protocol
import linohost_worker as worker
from linohost_retarget import Inexact, answers, normalized, retarget, state

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


# -- the zygote --------------------------------------------------------------------------

class Template:
    """The template site, set up in this process."""

    def __init__(self, project):
        self.project = project
        _use_project(project)
        module = importlib.import_module(f"{project.name}.settings")
        self.raw = state(module.SITE, module)
        self.normal = normalized(self.raw, module.SITE)
        self.project_dir = module.SITE.project_dir
        self.site_prefix = module.SITE.site_prefix
        import django
        from django.db import connection
        queries = []
        with connection.execute_wrapper(
                lambda execute, sql, params, many, context: (
                    queries.append((sql, params)) if not many else None,
                    execute(sql, params, many, context))[1]):
            django.setup()
        self.reads = answers(queries)
        self.warm_up()

    def warm_up(self):
        """Import what a first request imports (and the group's database backend),
        without keeping anything of the template's URL prefix (the URL conf is
        imported again by each worker)."""
        engine = os.environ.pop("LINOHOST_ZYGOTE_ENGINE", "")
        if engine:
            importlib.import_module(engine + ".base")
        self._warm_requests()

    def _warm_requests(self):
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler
        from django.urls import clear_url_caches
        from django.utils.module_loading import import_string
        for path in settings.MIDDLEWARE:
            import_string(path.rsplit(".", 1)[0] + "." + path.rsplit(".", 1)[1])
        WSGIHandler                                   # noqa: B018 - imported on purpose
        before = set(sys.modules)
        importlib.import_module(settings.ROOT_URLCONF)
        clear_url_caches()
        # The URL conf and what computes with the prefix at import go again.
        for name in {settings.ROOT_URLCONF} | (set(sys.modules) - before):
            if name == settings.ROOT_URLCONF or name.endswith(".urls"):
                sys.modules.pop(name, None)
        from django.db import connections
        connections.close_all()


def main():
    project = Path(sys.argv[1]).resolve()
    control = socket.socket(fileno=int(os.environ.pop("LINOHOST_ZYGOTE_FD")))
    sys.argv = ["linohost-worker", str(project)]
    worker.without_threads_at_import()
    t0 = time.monotonic()
    try:
        if (project / "variant.json").exists():       # zygotes.VARIANT_FILE
            variant_database(project, json.loads((project / "variant.json").read_text()))
        template = Template(project)
    except BaseException:
        worker.log(f"zygote for {project.name} cannot set up its template:\n"
                   f"{traceback.format_exc()}")
        control.send(json.dumps({"failed": "template"}).encode())
        os._exit(protocol.BOOT_FAILED)
    # A worker gets the signal handlers a plain start has now (Lino's for SIGTERM).
    template.signals = {s: signal.getsignal(s) for s in SIGNALS}
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.send(json.dumps({"ready": round(time.monotonic() - t0, 3),
                             "threads": _threads()}).encode())
    worker.log(f"zygote for {project.name} ready in {time.monotonic() - t0:.2f} s")
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 65536, 8)
        except InterruptedError:
            continue
        if not data:                          # the keeper is gone
            os._exit(0)
        request = json.loads(data)
        threads = _threads()
        if threads != 1:
            control.send(json.dumps({"error": f"{threads} threads in the zygote: "
                                              f"forking is not safe"}).encode())
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                child = os.fork()
                if child:
                    control.send(json.dumps({"pid": child}).encode())
                    os._exit(0)
                become_worker(template, control, request, fds)
            finally:
                os._exit(protocol.BOOT_FAILED)
        for fd in fds:
            os.close(fd)
        os.waitpid(pid, 0)


def _use_project(project):
    """Make the template *project* (ROOT/run/zygotes/NAME/NAME) Django's settings, with
    the host's shared hook (ROOT/local) importable."""
    sys.path[:0] = [str(project.parent), str(project.parent.parent.parent.parent / "local")]
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{project.name}.settings"


def variant_database(project, tables):
    """The template's database of a data variant: the demo data's tables (or, without
    demo data, tables made by Lino's initdb in a child process) all emptied but the
    content types (rows such as excerpt types point at them, and the sites of a group
    hold the same: they are made in one order), then *tables* ({name: {"columns",
    "rows"}}, as the sites reported them) filled. Names are checked against the
    database's own (quoted as identifiers), values bound."""
    import sqlite3
    db = project / "default.db"
    if not db.exists():
        pid = os.fork()
        if pid == 0:
            try:
                _use_project(project)
                import django
                django.setup()
                from django.core.management import call_command
                call_command("initdb", interactive=False, verbosity=0)
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        if os.waitpid(pid, 0)[1] != 0:
            raise RuntimeError("initdb of the variant's template failed")
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA foreign_keys = OFF")
        known = {name for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        unknown = set(tables) - known
        if unknown:
            raise RuntimeError(f"tables not in the template: {', '.join(sorted(unknown))}")
        with con:
            kept = {"django_migrations"} | ({"django_content_type"} - set(tables))
            for name in sorted(known - kept):
                con.execute(f"DELETE FROM {_quoted(name)}")
            for name, table in sorted(tables.items()):
                have = {row[1] for row in con.execute(f"PRAGMA table_info({_quoted(name)})")}
                columns = [c for c in table["columns"] if c in have]
                index = [table["columns"].index(c) for c in columns]
                con.executemany(
                    f"INSERT INTO {_quoted(name)} ({', '.join(map(_quoted, columns))}) "
                    f"VALUES ({', '.join('?' * len(columns))})",
                    [[bytes.fromhex(row[i]["hex"]) if isinstance(row[i], dict) else row[i]
                      for i in index] for row in table["rows"]])
    finally:
        con.close()


def _quoted(identifier):
    return '"' + identifier.replace('"', '""') + '"'


def _threads():
    return len(os.listdir("/proc/self/task"))


# -- a worker ----------------------------------------------------------------------------

def become_worker(template, control, request, fds):
    """In the forked worker: become *request*'s site and serve it (or run its
    ``command``: then *fds* are its stdin, stdout, stderr and the status pipe)."""
    command = request.get("command")
    if command:
        listen_fd, status_fd, std = None, fds[3], fds[:3]
    else:
        listen_fd, status_fd, log_fd = fds
        std = [os.open(os.devnull, os.O_RDONLY), log_fd, log_fd]
    for sig, handler in template.signals.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    control.close()
    for target, fd in enumerate(std):
        os.dup2(fd, target)
    for fd in set(std):
        if fd > 2:
            os.close(fd)
    if command:
        _std_streams()
    # What the zygote had open (e.g. the event loop daphne makes at import) is not
    # shared with it: each such descriptor becomes /dev/null, and stays taken, so
    # that no object of the zygote ever reads, writes or closes a file of the worker.
    keep = {0, 1, 2, listen_fd, status_fd}
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep and fd != null:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass                          # the directory listing's own descriptor
    os.close(null)
    if request.get("uid") is not None:
        os.setgroups([])
        os.setgid(request["gid"])
        os.setuid(request["uid"])
        os.umask(0o027)
    os.environ.update(request.get("environ", {}))
    deadline = time.monotonic() + 5         # re-parented to the keeper (a subreaper)
    while os.getppid() != request["keeper_pid"] and time.monotonic() < deadline:
        time.sleep(0.001)
    worker.die_with_keeper(request["keeper_pid"])
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    status = os.fdopen(status_fd, "w", buffering=1)
    project = Path(request["project"])
    os.chdir(project)
    try:
        retarget(template, project)
    except Inexact as e:
        worker.log(f"not forked from the zygote: {e}")
        if e.variant:                       # the keeper may make a zygote of this data
            digest, tables = e.variant
            line = protocol.say(protocol.VARIANT, digest,
                                json.dumps(tables, separators=(",", ":")))
            if len(line) < 60000:           # a pipe's buffer: a command's is read at its end
                status.write(line)
        status.write(protocol.say(protocol.NOT_EXACT, e))
        os._exit(protocol.INEXACT)
    except BaseException:
        worker.log(f"cannot become site {project.name}:\n{traceback.format_exc()}")
        os._exit(protocol.BOOT_FAILED)
    if command:
        status.write(protocol.say(protocol.FORKED))
        status.close()
        run_command(project, command)
    try:
        app = worker.load_application(project)
    except BaseException:
        worker.log(f"cannot load site {project.name}:\n{traceback.format_exc()}")
        os._exit(protocol.BOOT_FAILED)
    status.write(protocol.say(protocol.FORKED))
    worker.serve(project, app, socket.socket(fileno=listen_fd), status, request)


def _std_streams():
    """sys.stdin/stdout/stderr anew on descriptors 0, 1, 2 (now the caller's), buffered
    as Python buffers them at its start (line by line on a terminal)."""
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")


def run_command(project, command):
    """Run ``manage.py ARGV`` of the site, or a script (``python -c SCRIPT ARGV``), as
    the plain process would; leave with its exit code."""
    argv = command["argv"]
    if command.get("script") is not None:
        sys.argv = ["-c", *argv]
        code = _exit_code(lambda: exec(compile(command["script"], "<string>", "exec"),
                                       {"__name__": "__main__"}))
    else:
        from django.core.management import execute_from_command_line
        sys.argv = [str(project / "manage.py"), *argv]
        code = _exit_code(lambda: execute_from_command_line(sys.argv))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    worker._shutdown_lino()
    os._exit(code)


def _exit_code(run):
    """What the interpreter would exit with after *run*."""
    try:
        run()
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:                     # noqa: BLE001 - as the interpreter does
        traceback.print_exc()
        return 1
    return 0
