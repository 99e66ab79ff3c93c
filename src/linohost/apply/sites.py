"""Creating and removing sites: every step journaled, all or nothing."""

import dataclasses
import datetime
import glob
import os
import secrets
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from ..backends.db import backend
from ..backends.process import process_backend
from ..errors import Conflict, Interrupted, UsageError
from ..model import apps, names
from ..model.site import Site
from ..render import site as render_site
from . import demo, envs, keys, locales, maintenance, pagecache, site_settings, users
from ..fs import atomic_write, write_secret
from .journal import Journal, undo_step


def env_modules(env):
    """Top-level module names installed in *env* (a site name must not shadow one)."""
    out = set()
    for p in glob.glob(f"{env.path}/lib/python3*/site-packages/*"):
        n = Path(p).name
        if n.endswith(".dist-info") or n.endswith(".pth"):
            continue
        out.add(n.removesuffix(".py").split(".")[0])
    return out


def module_installed(env, dotted):
    """Whether module *dotted* (a.b.c) is a file of *env*'s site-packages.

    Looked up on disk, not imported: nothing of the environment runs as the
    caller (root) to validate input."""
    rel = Path(*dotted.split("."))
    for sp in glob.glob(f"{env.path}/lib/python3*/site-packages"):
        base = Path(sp) / rel
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def plan_new(ctx, name, app, env, db, title=None, languages=("en",), domain="",
             front_end=None, admin="", limits=None, new_env=False):
    """Validate everything about a new site before anything is made; return its record.
    *new_env*: environment *env* is to be made before the site (adopt): the site's name
    is checked against the modules of every environment, the app not."""
    host = ctx.host
    if new_env:
        modules = set().union(*(env_modules(e) for e in host.envs()))
    else:
        env_rec = host.env(env)
        modules = env_modules(env_rec)
    names.site_name(name, modules)
    if host.has_site(name) or host.site_dir(name).exists():
        raise Conflict(f"site {name!r} already exists")
    app_rec = apps.resolve(app)
    if not new_env:
        check_app(env_rec, app_rec)
    if db not in ("sqlite", "postgresql", "mysql"):
        raise UsageError(f"unknown database engine {db!r}")
    if domain:
        names.domain(domain)
    check_secret_key(ctx.cfg)
    users.check_free(ctx, name)
    db_name = host.db_prefix + name if db != "sqlite" else ""
    be = backend(db, ctx.cfg)
    be.check()
    clash = be.clash(db_name) if be.server else None
    if clash:
        raise Conflict(f"the {db} {clash} already exists: choose another site name, or "
                       f"another db_prefix for this host root (host config key)")
    front_end = front_end or "react"
    if front_end not in render_site.FRONT_ENDS:
        raise UsageError(f"unknown front end {front_end!r}: use react or extjs")
    return Site(name=name, app=app_rec.name, settings_module=app_rec.settings_module, env=env,
                db=db, title=title or name.replace("_", " ").title(),
                languages=tuple(languages), front_end=front_end, domain=domain,
                db_name=db_name, created=_now(), admin=admin, **(limits or {}))


def check_app(env, app):
    """Raise UsageError unless *app*'s settings module is installed in *env*."""
    top = app.settings_module.split(".")[0]
    if top not in env_modules(env):
        raise UsageError(
            f"app {app.name!r} is not installed in environment {env.name!r} (module {top} "
            f"missing): create an environment with it, e.g. `linohost env create NAME "
            f"{app.name}`")
    if not module_installed(env, app.settings_module):
        raise UsageError(
            f"app {app.name!r} is not installed in environment {env.name!r} (module "
            f"{app.settings_module} missing)")


#: A site's own fence in its record (see keeper/fence.py), by option name.
LIMIT_FIELDS = {"memory": "memory_limit", "cpu_weight": "cpu_weight", "tasks": "tasks_limit"}


def set_limits(ctx, name, **values):
    """Give site *name* limits of its own (0: the host's [limits]); its next worker
    is fenced by them (the keeper sees the record change). Return the record."""
    host = ctx.host
    changes = {LIMIT_FIELDS[k]: v for k, v in values.items() if v is not None}
    site = dataclasses.replace(host.site(name), **changes)
    atomic_write(host.registry_dir / f"{site.name}.toml", site.dumps())
    return site


def check_secret_key(cfg):
    """Under the `env` policy a site cannot start without DJANGO_SECRET_KEY:
    say so before anything is made (the generated djangosite_local.py reads it)."""
    if cfg["secret_policy"] == "env" and not os.environ.get("DJANGO_SECRET_KEY"):
        raise UsageError("DJANGO_SECRET_KEY is not set, and this host's secret policy is "
                         "'env': set it, or change the policy with `linohost init --secret "
                         "derived`")


def new(ctx, site, data="demo", first_admin=None, own="", db_kept=False, held=""):
    """Create *site* (a record from :func:`plan_new`): files, database, data, caches.

    *data* is "demo", "empty", or a function ``data(ctx, site)`` that loads it;
    *first_admin* (user name, password) is made once the data is there; *own* is the
    own part of its settings (a copy's, carried from its source); *db_kept*: its
    server database exists with its data (`adopt --db move`: its user's password in
    the secrets already, root's); *held*: made under its maintenance page, saying it
    is being *held* ("adopted"), which the caller removes (adopt, once it has checked
    the site: nobody uses it, and none of its background tasks runs, before)."""
    host, system = ctx.host, ctx.system
    env = host.env(site.env)
    app = apps.resolve(site.app)
    project = host.site_dir(site.name)
    journal = Journal(host, "new", site.name).start()
    try:
        users.create(ctx, site.name, journal)
        journal.record("tree", path=str(project))
        project.mkdir()
        if held:
            maintenance.show(host, site, held)
        for sub in ("media", "config", "apache"):
            (project / sub).mkdir()
        write_files(host, site, own)
        keys.write(ctx, site.name, journal)
        be = backend(site.db, ctx.cfg)
        secret = host.secrets_dir / f"db-{site.name}"
        if be.server and db_kept:               # its user's password, root's until now
            write_secret(secret, secret.read_text().strip(), system.owner_of(site.name))
        elif be.server:
            journal.record("file", path=str(secret))
            password = secrets.token_urlsafe(24)
            write_secret(secret, password, system.owner_of(site.name))
            journal.record("database", engine=site.db, name=site.db_name)
            ctx.progress(f"creating {site.db} database and user {site.db_name}")
            be.create(site.db_name, password, note=host.db_note(site.name))
        users.own_project(ctx, site.name)
        env = envs.ensure_app(ctx, env, app, project)
        template = demo.find(env, site) if data == "demo" else None
        cached = False
        if template:
            ctx.progress(f"{site.name}: the demo data made by prep today for "
                         f"{(template / demo.READY).read_text().strip()}")
            cached = demo.load(ctx, env, site, template)
            tasks = ["previews"]                # the template's are its own site's URLs
        elif callable(data):                    # e.g. load an archive
            data(ctx, site)
            tasks = []
        else:
            tasks = [data]
        if not envs.has_static(env, app, site.front_end):
            tasks.append("static")
        if not cached:                          # (else the template's: same structure)
            tasks.append("cache")
        if first_admin:                         # for the site user only, removed by it
            write_secret(project / ".first-admin", "\n".join(first_admin),
                         system.owner_of(site.name))
            tasks.append("admin")
        ctx.progress(f"initialising {site.name}: {', '.join(tasks)}")
        # Lino's kernel started before the data was there: the cache (actions made
        # from rows, e.g. excerpt types) must be built by a process that sees it.
        split = tasks.index("cache") if tasks[0] in ("demo", "empty") else len(tasks)
        out = envs.run_site_tasks(ctx, env, project, ["locale", *tasks[:split]],
                                  site=site).stdout
        locales.ensure(ctx, locales.asked(out))
        if tasks[split:]:
            out += envs.run_site_tasks(ctx, env, project, tasks[split:], site=site).stdout
        if cached:
            pagecache.share(host, project)
        if be.server:                           # who made it, for a clash from elsewhere
            be.mark(site.db_name, host.db_note(site.name))
        if "static" in tasks:
            envs.mark_static(env, app, site.front_end)
        if tasks[:1] == ["demo"]:
            demo.save(ctx, env, site, cache=demo.UNTITLED in out.splitlines())
        record = host.registry_dir / f"{site.name}.toml"
        journal.record("file", path=str(record))
        atomic_write(record, site.dumps())
    except BaseException as e:
        ctx.progress(f"rolling back {site.name}")
        with sigint_ignored():                  # a second Ctrl-C must not cut it short
            journal.undo(ctx)
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted: {site.name} rolled back") from None
        raise
    journal.commit()
    return site


@contextmanager
def sigint_ignored():
    """Ignore SIGINT meanwhile (in the main thread; elsewhere it never arrives)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def settings_context(host, site):
    env = host.env(site.env)
    be = backend(site.db, host.cfg)
    return dict(site_prefix=host.site_prefix(site), static_root=env.static_root,
                allowed_hosts=list(host.site_hostnames(site)),
                db_server=be.connect_args() if be.server else None)


def write_files(host, site, own=""):
    """Write the files linohost makes in *site*'s project directory."""
    project = host.site_dir(site.name)
    files = render_site.project_files(site, own, **settings_context(host, site))
    for rel, text in files.items():
        atomic_write(project / rel, text, mode=0o640)


def own_settings(host, site, force=False, before=None):
    """The own part of *site*'s settings.py (:class:`site_settings.Own`), checked before
    anything is rewritten. *before*: the (host, site) linohost last wrote it for, when
    the command changes them (to migrate a file of an older linohost)."""
    last_host, last_site = before or (host, site)
    return site_settings.own_part(
        host.site_dir(site.name) / "settings.py",
        lambda: render_site.generated_settings(last_site, **settings_context(last_host, last_site)),
        force)


def write_settings(host, site, owner=None, restart=True, own=None):
    """Regenerate settings.py of an existing site (after `init` changed the host),
    keeping its *own* part (read from the file if not given), and restart its running
    process, if any, to apply it (unless not *restart*)."""
    path = host.site_dir(site.name) / "settings.py"
    if own is None:
        own = own_settings(host, site)
    text = render_site.settings_py(site, own=own.text, **settings_context(host, site))
    atomic_write(path, text, mode=0o640)
    if owner:
        os.chown(path, *owner)
    if restart:
        process_backend(host).restart_site(site.name)


def destruction_plan(ctx, site, keep_database=False):
    """What `rm` destroys, in order, as journal steps (*keep_database*: not its server
    database and user)."""
    host = ctx.host
    steps = [{"kind": "file", "path": str(host.registry_dir / f"{site.name}.toml")}]
    if site.db != "sqlite":
        if not keep_database:
            steps.append({"kind": "database", "engine": site.db, "name": site.db_name})
        steps.append({"kind": "file", "path": str(host.secrets_dir / f"db-{site.name}")})
    steps.append({"kind": "file", "path": str(keys.key_file(host, site.name))})
    if keys.kept_file(host, site.name).exists():
        steps.append({"kind": "file", "path": str(keys.kept_file(host, site.name))})
    if keys.smtp_file(host, site.name).exists():
        steps.append({"kind": "file", "path": str(keys.smtp_file(host, site.name))})
    steps.append({"kind": "tree", "path": str(host.site_dir(site.name))})
    return steps + users.destruction_steps(ctx, site.name)


def describe(step):
    if step["kind"] == "database":
        return f"{step['engine']} database and user {step['name']}"
    if step["kind"] == "unix_user":
        return f"Unix user and group {step['name']}"
    return {"tree": "directory", "file": "file"}[step["kind"]] + " " + step["path"]


def rm(ctx, site, keep_database=False):
    """Destroy *site*: registry record, database and user (unless *keep_database*),
    secrets, directory, Unix user."""
    journal = Journal(ctx.host, "rm", site.name).start(
        destruction_plan(ctx, site, keep_database))
    errors = journal.undo(ctx, log=ctx.progress)
    if errors:
        raise Conflict(f"could not remove everything of {site.name}: {errors[0]}")


@undo_step("database")
def _undo_database(ctx, engine, name):
    backend(engine, ctx.cfg).drop(name)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
