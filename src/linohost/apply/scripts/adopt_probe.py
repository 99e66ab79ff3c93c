"""Read a Lino project's settings in its own interpreter; print them as JSON.

Run by `linohost adopt` as ``PYTHON -c TEXT PROJECT [PATH ...]``, never imported by
linohost. The settings module is the one the project's manage.py names (its Django
management call is not made). Only reads: nothing is written. The last line of output
is ``LINOHOST-PROBE {json}``, or ``LINOHOST-PROBE-ERROR text``; it holds the SECRET_KEY
and the database password: linohost reads it, never prints it.

With ``--answers USER PROJECT [PATH ...]`` it prints instead what the site answers to
its pages and its JSON API signed in as USER (see :func:`answers`), the same way for the
source and for the site made from it: ``LINOHOST-PROBE {"/api/APP/TABLE": [status, body]}``.
"""

import ast
import datetime
import inspect
import json
import os
import runpy
import sys

UPPER_SKIPPED = {"SITE", "Site"}
#: The connection of the default database (its PASSWORD too: the output is read by
#: linohost alone, never printed).
DB_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
#: Settings whose values are secrets: named among the settings, their values not.
SECRET_SETTINGS = {"SECRET_KEY", "DATABASES", "EMAIL_HOST_PASSWORD"}

#: What a time relative to now reads as in answers (see answers()).
RELATIVE_TIME = "(a time relative to now)"


def settings_module(project):
    """DJANGO_SETTINGS_MODULE as manage.py sets it, found by running manage.py
    with Django's command-line entry point replaced by a stop."""
    from django.core import management

    class Stop(Exception):
        pass

    def stop(*args, **kw):
        raise Stop()

    management.execute_from_command_line = stop
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    argv = sys.argv
    sys.argv = [os.path.join(project, "manage.py"), "help"]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except Stop:
        pass
    finally:
        sys.argv = argv
    return os.environ.get("DJANGO_SETTINGS_MODULE") or "settings"


def literal(value):
    """*value*'s repr if it reads back as the same literal, else None."""
    try:
        text = repr(value)
        return text if ast.literal_eval(text) == value else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def flat(items, leaf=tuple):
    """The *leaf* items of what Lino's Site methods yield as nested iterables: the
    (app, key, value) triples of get_plugin_configs(), the names (``leaf=str``) of
    get_installed_plugins()."""
    for x in items or ():
        if isinstance(x, leaf):
            yield x
        else:
            yield from flat(x, leaf)


def own_plugins(site, app):
    """(plugins the site installs beyond its app's Site, the app's it does not)."""
    asked = [*flat(site.get_installed_plugins(), str), *flat(site.local_apps, str)]
    base = list(flat(app.Site.get_installed_plugins(site), str))
    return ([p for p in dict.fromkeys(asked) if p not in base],
            [p for p in dict.fromkeys(base) if p not in asked])


def assigned(path):
    """The names the settings file itself assigns at its top level (its syntax tree:
    its values are read from the module that ran)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and n.id not in out:
                    out.append(n.id)
    return out


def shared_settings(name):
    """The module of settings shared by the host's sites, if *name* imported it:
    getlino's ``lino_local.settings`` beside ``lino_local.PRJ.settings``."""
    parts = name.split(".")
    if len(parts) != 3 or parts[2] != "settings":
        return None
    return sys.modules.get(f"{parts[0]}.settings")


def probe(project):
    import importlib
    name = settings_module(project)
    mod = importlib.import_module(name)
    site = mod.SITE
    own_classes = [c for c in type(site).__mro__ if c.__module__ == name]
    app_module = next(c.__module__ for c in type(site).__mro__ if c.__module__ != name)
    app = importlib.import_module(app_module)
    attrs, methods = {}, {}
    for cls in reversed(own_classes):
        for k, v in vars(cls).items():
            if k.startswith("__"):
                continue
            if callable(v) or isinstance(v, (classmethod, staticmethod, property)):
                try:
                    methods[k] = inspect.getsource(v)
                except (OSError, TypeError):
                    methods[k] = ""
            else:
                attrs[k] = literal(getattr(site, k))
    plugin_configs = []
    if "get_plugin_configs" in methods:     # its own: those the app's Site does not give
        base = list(flat(app.Site.get_plugin_configs(site)))
        plugin_configs = [[a, k, literal(v)] for a, k, v in flat(site.get_plugin_configs())
                          if (a, k, v) not in base]
    plugins, dropped = own_plugins(site, app)
    shared = shared_settings(name)
    settings = {}
    files = [mod.__file__] + ([shared.__file__] if shared else [])
    for k in dict.fromkeys(n for f in files for n in assigned(f)):  # not Site(globals())'s
        v = getattr(mod, k, None)
        if k.isupper() and k not in UPPER_SKIPPED:
            if not hasattr(app, k) or getattr(app, k) != v:
                settings[k] = None if k in SECRET_SETTINGS else literal(v)
    dbs = getattr(mod, "DATABASES", {}) or {}
    default = dict(dbs.get("default", {}))
    key = getattr(mod, "SECRET_KEY", "")
    return {
        "settings_module": name,
        "settings_file": os.path.abspath(mod.__file__),
        "app_module": app_module,
        "languages": [lng.django_code for lng in site.languages],
        "default_ui": getattr(site, "default_ui", None),
        "title": getattr(site, "title", None),
        "database": {k: str(default.get(k) or "") for k in DB_KEYS},
        "secret_key": key if isinstance(key, str) else "",
        "shared_settings": os.path.abspath(shared.__file__) if shared else None,
        "seed_hook": "djangosite_local" in sys.modules,
        "attrs": attrs, "methods": methods, "plugin_configs": plugin_configs,
        "plugins": plugins, "plugins_dropped": dropped,
        "settings": settings, "distributions": distributions(),
    }


def distributions():
    """{name: [version, local]} of what the interpreter has installed; *local*: not
    from a package index (pip's direct_url.json: an editable or a local directory, a
    VCS checkout, a URL), so that no pin of its version installs it."""
    from importlib import metadata
    out = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name and name not in out:
            out[name] = [d.version, d.read_text("direct_url.json") is not None]
    return out


#: Pages a person sees first, asked besides the tables: the index page, the dashboard,
#: React's user settings (404 where the front end has none: the same on both sides).
PAGES = ("", "api/main_html", "user/settings")
#: What the project directory's name (React's ``site_name``) reads as in answers.
PROJECT_NAME = "(the project directory's name)"
#: What an error page that is not JSON reads as: Django's (under DEBUG, its technical
#: page), not the site's.
ERROR_PAGE = "(an error page)"
#: What a detail's reason why its row cannot be deleted reads as: it names the rows
#: that refer to it in the order the database happens to hold them.
UNDELETABLE = "(why it cannot be deleted)"


def masked(data):
    """A JSON answer with what differs by nature masked (see answers())."""
    if isinstance(data, dict):
        if "site_name" in data:                         # React's user/settings
            data["site_name"] = PROJECT_NAME
        if data.get("disable_delete") and "navinfo" in data:      # a detail
            data["disable_delete"] = UNDELETABLE
    return data


def answers(project, username):
    """{path: [status, body]} of what a person sees first (PAGES), of a GET of the default
    table of every model with rows that *username* may see
    (``api/APP/TABLE?fmt=json&limit=10&sort=PK``) and of the detail of its first row
    (``api/APP/TABLE/ID?fmt=json&an=detail&sort=PK``), signed in as *username*; not Django's
    sessions (their ages are counted from now). The site's own URL prefix reads as "/" in
    paths and bodies. Sessions live in signed cookies and everything runs in one
    transaction rolled back at the end: no row is written. A body that is JSON comes
    parsed, so that a difference can be named.

    What differs by nature reads the same on both sides: times told relative to now
    ("17 seconds ago": Django's naturaltime, which Lino uses) read as RELATIVE_TIME
    (asked a minute later, the same site answers otherwise); the cache stamp of the
    front end (Lino's ``lino_version``, the time its cache was made) as 0; the project
    directory's name as PROJECT_NAME; a detail's reason why its row cannot be deleted
    as UNDELETABLE; an error page that is not JSON (a table without a detail window
    answers 404) as ERROR_PAGE; and linohost's own script in the page head (its
    ``under_prefix`` plugin, which keeps the front end under the prefix) is left out."""
    import django
    from django.conf import settings
    settings_module(project)                # sets DJANGO_SETTINGS_MODULE as manage.py does
    from django.contrib.humanize.templatetags.humanize import NaturalTimeFormatter
    string_for = NaturalTimeFormatter.string_for
    NaturalTimeFormatter.string_for = classmethod(
        lambda cls, value: RELATIVE_TIME if isinstance(value, datetime.date)
        else string_for(value))
    django.setup()
    from django.apps import apps
    from django.db import transaction
    from django.test import Client
    from lino.api import rt
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    site = settings.SITE
    site.developer_site_cache = False       # (its page would write the front end's cache)
    site.kernel._lino_version = 0
    if "under_prefix" in site.plugins:
        site.plugins.under_prefix.get_head_lines = lambda *a, **kw: iter(())
    prefix = site.site_prefix
    name = json.dumps(site.project_dir.name)
    host = next((h for h in settings.ALLOWED_HOSTS if h and "*" not in h and
                 not h.startswith(".")), "localhost")
    out = {}

    def get(path, **params):
        r = client.get(prefix + path, params)
        body = r.content.replace(prefix.encode(), b"/") if prefix != "/" else r.content
        text = body.decode(errors="replace").replace(f"site_name: {name}",
                                                     f"site_name: {json.dumps(PROJECT_NAME)}")
        try:
            out["/" + path] = [r.status_code, masked(json.loads(text))]
        except ValueError:
            out["/" + path] = [r.status_code, ERROR_PAGE if r.status_code >= 400 else text]

    with transaction.atomic():
        user = rt.models.users.User.objects.get(username=username)
        client = Client(HTTP_HOST=host)
        client.force_login(user)
        for path in PAGES:
            get(path)
        for model in apps.get_models():
            table = model.get_default_table() if hasattr(model, "get_default_table") else None
            if (table is None or model._meta.label == "sessions.Session"
                    or not table.get_view_permission(user.user_type)):
                continue
            first = model.objects.order_by("pk").first()
            if first is None:
                continue
            path = f"api/{table.app_label}/{table.__name__}"
            # sorted by the primary key: a table without an order of its own comes in
            # whatever order the database holds its rows, which a restore may change (a
            # detail's first, previous, next and last rows too)
            get(path, fmt="json", limit=10, sort=model._meta.pk.name)
            get(f"{path}/{first.pk}", fmt="json", an="detail", sort=model._meta.pk.name)
        transaction.set_rollback(True)
    return out


def main():
    args = sys.argv[1:]
    username = None
    if args[:1] == ["--answers"]:
        username, args = args[1], args[2:]
    project, extra = args[0], args[1:]
    os.chdir(project)
    sys.path[:0] = [project, *extra]
    # as a WSGI server runs it: Lino takes a command line that starts with "-" (this
    # one's "-c") for a development server's, and so writes its cache at each page
    sys.argv = [os.path.join(project, "manage.py")]
    try:
        data = answers(project, username) if username else probe(project)
    except BaseException as e:              # the project's own code raised
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"LINOHOST-PROBE-ERROR {type(e).__name__}: {msg}", flush=True)
        sys.exit(3)
    print("LINOHOST-PROBE " + json.dumps(data), flush=True)


if __name__ == "__main__":
    main()
