"""A worker forked from a zygote becomes its site (shipped, see keeper/shipped.py).

The zygote read its template's state before Lino's start-up (:func:`state`, made
comparable by :func:`normalized`) and what that start-up read of the database
(:func:`answers`). A forked worker imports its own site's settings module and
compares (:func:`retarget`): where they differ in anything but what a worker
re-derives (paths, names, URL prefix, title, secrets, database) or its database
holds other rows where Lino's start-up reads, it raises :class:`Inexact` (the keeper
then starts the site plainly); else it copies the site's values into the running
Site, its plugins and Django's settings, and redoes what Lino and Django derived
from them at start-up.
"""
import hashlib
import importlib
import os
import re
import sys
import types
from pathlib import Path

#: Values a site may have of its own (compared by the keeper's tests, not here).
PER_SITE = {"settings.SECRET_KEY", "settings.DATABASES", "settings.EMAIL_HOST_PASSWORD",
            "settings.ALLOWED_HOSTS", "settings.SITE_HOSTNAMES", "settings.CSRF_TRUSTED_ORIGINS",
            "site.title", "site.startup_time", "plugin.users.demo_username"}
#: Not compared: the site object itself, and the settings module's namespace
#: (its values are compared one by one as settings.*).
SKIP = {"settings.SITE", "site.django_settings", "site.confdirs"}
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


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
    """*texts* with the environment's, the host's local/ and the site's own directory,
    its name and URL prefix replaced by words."""
    # The directories first: a site's name may be a word of their path (the host root).
    subs = [(re.escape(sys.prefix), "<ENV>"), (re.escape(str(site.project_dir)), "<PROJECT>"),
            (r"(?<![\w.])" + re.escape(site.project_dir.name) + r"(?!\w)", "<NAME>")]
    local = getattr(sys.modules.get("djangosite_local"), "__file__", None)
    if local:                                   # the host's local/ (under_prefix...)
        subs.insert(1, (re.escape(os.path.dirname(local)), "<LOCAL>"))
    if site.site_prefix != "/":
        subs.insert(len(subs) - 1, (re.escape(site.site_prefix), "/<NAME>/"))
    out = {}
    for k, v in texts.items():
        for pattern, word in subs:
            v = re.sub(pattern, word, v)
        out[k] = v
    return out


# -- what Lino's start-up read of the database --------------------------------------

def answers(queries):
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


# -- becoming the site --------------------------------------------------------------

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
