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
import hashlib
import importlib
import json
import os
import random
import re
import signal
import socket
import sys
import time
import traceback
import types
from pathlib import Path

INEXACT = 4
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
#: Values a site may have of its own (compared by the keeper's tests, not here).
PER_SITE = {"settings.SECRET_KEY", "settings.DATABASES", "settings.EMAIL_HOST_PASSWORD",
            "settings.ALLOWED_HOSTS", "settings.SITE_HOSTNAMES", "settings.CSRF_TRUSTED_ORIGINS",
            "site.title", "site.startup_time", "plugin.users.demo_username"}
#: Not compared: the site object itself, and the settings module's namespace
#: (its values are compared one by one as settings.*).
SKIP = {"settings.SITE", "site.django_settings", "site.confdirs"}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")

JOBS_SOURCE = os.environ.pop("LINOHOST_JOBS_SOURCE", "")
worker = types.ModuleType("linohost_worker")
exec(compile(os.environ.pop("LINOHOST_WORKER_SOURCE"), "linohost/keeper/worker.py", "exec"),
     worker.__dict__)


class Inexact(Exception):
    """The site differs from its zygote's template in what a fork cannot redo."""

    def __init__(self, reason, variant=None):
        super().__init__(reason)
        self.variant = variant              # (digest, tables) when its data differ


# -- what a Site looks like before its start-up ----------------------------------------

def _text(value):
    """A comparable text of *value*: no object addresses, functions by their code."""
    if isinstance(value, types.FunctionType):
        code = value.__code__
        return f"function {value.__qualname__} {hash((code.co_code, repr(code.co_consts), code.co_names))}"
    try:
        text = repr(_untranslated(value))
    except Exception as e:                     # noqa: BLE001
        text = f"<unrepresentable {type(value).__name__}: {e}>"
    if isinstance(value, (set, frozenset)):
        text = repr(sorted(map(repr, value)))
    return _ADDRESS.sub("", text)


def _untranslated(value):
    """*value* with lazy translations replaced by their source text (translating them
    needs a set-up Django), in lists, tuples and dicts too."""
    if type(value).__name__ == "__proxy__" and hasattr(value, "_args"):
        return ("lazy", *value._args)
    if type(value) in (list, tuple):
        return type(value)(map(_untranslated, value))
    if type(value) is dict:
        return {k: _untranslated(v) for k, v in value.items()}
    return value


def state(site, module):
    """{key: text} of what the settings *module* made: Django settings, the Site's own
    attributes (also those of its class in the module) and its plugins'."""
    out = {}
    for k in dir(module):
        if k.isupper():
            out[f"settings.{k}"] = _text(getattr(module, k))
    names = set(vars(site))
    for cls in type(site).__mro__:
        if cls.__module__ == module.__name__:
            names |= {k for k in vars(cls) if not k.startswith("__")}
    for k in names:
        out[f"site.{k}"] = _text(getattr(site, k))
    for p in site.installed_plugins:
        for k, v in vars(p).items():
            if k != "site":
                out[f"plugin.{p.app_label}.{k}"] = _text(v)
    # Directories Lino looks for in a project at start-up (log/: a file handler;
    # lino.ini: plugin settings; migrations/: MIGRATION_MODULES).
    for sub in ("log", "lino.ini", "migrations"):
        out[f"project.{sub}"] = str((site.project_dir / sub).exists())
    return {k: v for k, v in out.items() if k not in SKIP}


def normalized(texts, site):
    """*texts* with the site's own directory, name and URL prefix replaced by words."""
    subs = [(re.escape(str(site.project_dir)), "<PROJECT>"),
            (r"(?<![\w.])" + re.escape(site.project_dir.name) + r"(?!\w)", "<NAME>")]
    if site.site_prefix != "/":
        subs.insert(1, (re.escape(site.site_prefix), "/<NAME>/"))
    out = {}
    for k, v in texts.items():
        for pattern, word in subs:
            v = re.sub(pattern, word, v)
        out[k] = v
    return out


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
        self.reads = _answers(queries)
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


def _answers(queries):
    """[(sql, params, rows)] of the reading *queries* (run again now: a wrapper does
    not see the rows its caller fetches), in order, without repeats."""
    from django.db import connection
    out, seen = [], set()
    for sql, params in queries:
        key = (sql, repr(params))
        if key in seen or not sql.lstrip().upper().startswith("SELECT"):
            continue
        seen.add(key)
        out.append((sql, params, _rows(connection, sql, params)))
    return out


def _rows(connection, sql, params):
    """The rows of *sql* in words that do not depend on the database engine (the
    template is SQLite: dates are text there, booleans numbers)."""
    if connection.vendor == "mysql":          # Django quotes names with " elsewhere
        sql = sql.replace('"', "`")
    try:
        with connection.cursor() as c:
            c.execute(sql, params)
            return repr([tuple(map(_cell, row)) for row in c.fetchall()])
    except Exception as e:                    # noqa: BLE001 - e.g. no such table yet
        return f"error: {type(e).__name__}"


def _cell(value):
    import datetime
    import decimal
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, datetime.datetime):
        value = value.replace(tzinfo=None).isoformat(sep=" ")
    elif isinstance(value, (datetime.date, datetime.time)):
        value = value.isoformat()
    elif isinstance(value, (bytes, memoryview)):
        value = bytes(value).hex()
    text = str(value) if value is not None else None
    try:                                      # 1, 1.0, Decimal("1.00"), "1.00": one number
        return str(decimal.Decimal(text).normalize()) if text is not None else None
    except (decimal.InvalidOperation, ValueError):
        return text


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
        os._exit(worker.BOOT_FAILED)
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
                os._exit(worker.BOOT_FAILED)
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
    demo data, tables made by Lino's initdb in a child process) all emptied, then
    *tables* ({name: {"columns", "rows"}}, as the sites reported them) filled. Names
    are checked against the database's own (quoted as identifiers), values bound."""
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
            for name in sorted(known - {"django_migrations"}):
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
            line = f"variant {digest} {json.dumps(tables, separators=(',', ':'))}\n"
            if len(line) < 60000:           # a pipe's buffer: a command's is read at its end
                status.write(line)
        status.write(f"inexact {e}\n")
        os._exit(INEXACT)
    except BaseException:
        worker.log(f"cannot become site {project.name}:\n{traceback.format_exc()}")
        os._exit(worker.BOOT_FAILED)
    if command:
        status.write("forked\n")
        status.close()
        run_command(project, command)
    try:
        app = worker.load_application(project)
    except BaseException:
        worker.log(f"cannot load site {project.name}:\n{traceback.format_exc()}")
        os._exit(worker.BOOT_FAILED)
    status.write("forked\n")
    if request.get("probe"):
        worker.probe(app, request["probe"])
    jobs = request.get("jobs")
    worker.serve(project, app, socket.socket(fileno=listen_fd), status,
                 threads=request["threads"], idle_timeout=request["idle_timeout"],
                 grace=request["grace"], jobs={**jobs, "source": JOBS_SOURCE} if jobs else None)


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


def retarget(template, project):
    """Make the running (template) Site and Django's settings those of *project*."""
    from django.conf import settings
    module, new, raw = _compare(template, project)
    _apply(template, settings.SITE, settings, module, new, raw)
    _same_reads(template)


def _compare(template, project):
    """Import *project*'s settings; raise Inexact if it differs from the template in
    anything but what a worker re-derives; return (module, its Site, its state)."""
    sys.path.insert(0, str(project.parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{project.name}.settings"
    module = importlib.import_module(f"{project.name}.settings")
    new = module.SITE
    raw = state(new, module)
    normal = normalized(raw, new)
    differ = sorted(k for k in set(normal) | set(template.normal)
                    if normal.get(k) != template.normal.get(k) and k not in PER_SITE)
    if differ:
        raise Inexact("differs from its group in " + ", ".join(differ[:5])
                      + (" …" if len(differ) > 5 else ""))
    return module, new, raw


#: The tables a query reads.
_TABLES = re.compile(r'(?:FROM|JOIN)\s+[`"]?(\w+)', re.I)


def _same_reads(template):
    """Raise Inexact unless this site's database holds what the template's held in
    what Lino's start-up read (rows that make actions: excerpt types, journals…).
    Then it says what it holds there: a digest of its answers (sites with the same
    one can share a zygote) and the rows of those tables, to seed that zygote with."""
    from django.db import connection
    answers = [_rows(connection, sql, params) for sql, params, rows in template.reads]
    differ = sorted({t for (sql, params, rows), mine in zip(template.reads, answers)
                     if mine != rows for t in _TABLES.findall(sql)[:1]})
    variant = None
    if differ and not any(a.startswith("error:") for a in answers):   # (no tables yet)
        digest = hashlib.sha256(repr(answers).encode()).hexdigest()[:16]
        read = sorted({t for sql, params, rows in template.reads for t in _TABLES.findall(sql)})
        try:
            variant = (digest, {t: _table(connection, t) for t in read})
        except Exception:                     # noqa: BLE001 - then it just starts plainly
            pass
    connection.close()
    if differ:
        raise Inexact("its database differs from its group's template in what Lino's "
                      "start-up reads: " + ", ".join(differ), variant)


def _table(connection, name):
    """{"columns": [...], "rows": [[...]]} of a whole table, as Django's SQLite
    backend stores the values (the zygotes' templates are SQLite)."""
    with connection.cursor() as c:
        c.execute("SELECT * FROM " + connection.ops.quote_name(name))   # a name it read
        return {"columns": [d[0] for d in c.description],
                "rows": [list(map(_sqlite_value, row)) for row in c.fetchall()]}


def _sqlite_value(value):
    import datetime
    import decimal
    import uuid
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time, decimal.Decimal)):
        return str(value)
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, (bytes, memoryview)):
        return {"hex": bytes(value).hex()}
    return value


def _apply(template, site, settings, module, new, raw):
    """Copy the site's values into the running Site, its plugins and Django's settings,
    and redo what was derived from them."""
    old_dir = template.project_dir
    for key in sorted(k for k in raw if raw[k] != template.raw.get(k)):
        kind, _, name = key.partition(".")
        if kind == "settings":
            setattr(settings, name, getattr(module, name))   # (LazySettings caches)
        elif kind == "site" and callable(getattr(new, name)):
            continue                            # its methods: the same code (compared)
        elif kind == "site":
            setattr(site, name, getattr(new, name))
        elif kind == "plugin":
            label, _, attr = name.partition(".")
            setattr(site.plugins[label], attr, getattr(new.plugins[label], attr))
    settings.SETTINGS_MODULE = module.__name__
    site.django_settings = module.__dict__
    # Its own class (the same code, compared above): what isinstance and repr see.
    site.__class__ = type(new)
    old_prefix = template.site_prefix
    _rederive(site, old_dir, old_prefix)


def _rederive(site, old_dir, old_prefix):
    """Redo what Lino and Django derived at start-up from the values just changed."""
    from django.conf import settings
    from django.db import connections
    from django.urls import clear_url_caches
    _moved(site, old_dir, old_prefix)
    for p in site.installed_plugins:
        _moved(p, old_dir, old_prefix)
    site.confdirs.scan_config_dirs()
    jinja = getattr(site.plugins, "jinja", None)
    env = getattr(getattr(jinja, "renderer", None), "jinja_env", None)
    if env is not None:
        for loader in getattr(env.loader, "loaders", ()):
            if hasattr(loader, "searchpath"):
                loader.searchpath = [str(p).replace(str(old_dir), str(site.project_dir), 1)
                                     for p in loader.searchpath]
        if env.cache is not None:
            env.cache.clear()
    site.kernel._lino_version = None
    clear_url_caches()
    sys.modules.pop(settings.ROOT_URLCONF, None)
    _reset_lazy("django.core.files.storage", "default_storage")
    _reset_lazy("django.contrib.staticfiles.storage", "staticfiles_storage")
    storage = sys.modules.get("django.core.files.storage")
    if storage is not None and hasattr(storage, "storages"):
        storage.storages._storages = {}
        storage.storages.__dict__.pop("backends", None)
    # The template's connection objects (closed: none is open in a zygote) go, and
    # the handler reads DATABASES again.
    from asgiref.local import Local
    connections._connections = Local(connections.thread_critical)
    connections.__dict__.pop("settings", None)
    connections._settings = None
    connections.settings                    # noqa: B018 - completes DATABASES, as at start
    if "lino.modlib.linod.utils" in sys.modules:
        _linod_names(site)
    users = getattr(site.plugins, "users", None)
    if users is not None and "_demo_user" in vars(users):
        del users._demo_user                    # the template's, cached by its start
    import djangosite_local
    after_fork = getattr(djangosite_local, "after_fork", None)
    if after_fork:
        after_fork(site)


def _moved(obj, old_dir, old_prefix):
    """Attributes of *obj* (the Site, a plugin) that its start-up derived from the
    template's directory or URL prefix: the same under this site's."""
    from django.conf import settings
    site = settings.SITE
    old, new = str(old_dir), str(site.project_dir)

    def move(v):
        if isinstance(v, Path) and (v == old_dir or old_dir in v.parents):
            return site.project_dir / v.relative_to(old_dir)
        if isinstance(v, str) and type(v) is str:
            if v == old or v.startswith(old + os.sep):
                return new + v[len(old):]
            if old_prefix != "/" and v.startswith(old_prefix):
                return site.site_prefix + v[len(old_prefix):]
        if type(v) in (list, tuple):
            return type(v)(map(move, v))
        return v

    for k, v in list(vars(obj).items()):
        moved = move(v)
        if moved is not v and moved != v:
            setattr(obj, k, moved)


def _reset_lazy(module_name, attr):
    from django.utils.functional import empty
    module = sys.modules.get(module_name)
    if module is not None and hasattr(module, attr):
        getattr(module, attr)._wrapped = empty


def _linod_names(site):
    """lino.modlib.linod.utils names Redis channels after the site's directory at
    import: name them after this site's (also where they were imported by name)."""
    utils = sys.modules["lino.modlib.linod.utils"]
    old = {k: getattr(utils, k) for k in ("suffix", "CHANNEL_NAME", "BROADCAST_CHANNEL")}
    importlib.reload(utils)
    new = {k: getattr(utils, k) for k in old}
    for module in list(sys.modules.values()):
        for k, value in old.items():
            if getattr(module, k, None) == value and module is not utils:
                setattr(module, k, new[k])
        if getattr(module, "get_channel_name", None) is not None and module is not utils \
                and getattr(module.get_channel_name, "__module__", "") == utils.__name__:
            module.get_channel_name = utils.get_channel_name


if __name__ == "__main__":
    main()
