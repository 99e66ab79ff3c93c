"""Creating and removing sites: every step journaled, all or nothing."""

import datetime
import glob
import os
import secrets
from pathlib import Path

from ..backends.db import backend
from ..backends.process import process_backend
from ..errors import Conflict, UsageError
from ..model import apps, names
from ..model.site import Site
from ..render import site as render_site
from . import demo, envs
from .files import atomic_write, chown_tree, write_secret
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
             front_end=None):
    """Validate everything about a new site before anything is made; return its record."""
    host = ctx.host
    env_rec = host.env(env)
    names.site_name(name, env_modules(env_rec))
    if host.has_site(name) or host.site_dir(name).exists():
        raise Conflict(f"site {name!r} already exists")
    app_rec = apps.resolve(app)
    top = app_rec.settings_module.split(".")[0]
    if top not in env_modules(env_rec):
        raise UsageError(
            f"app {app!r} is not installed in environment {env!r} (module {top} missing): "
            f"create an environment with it, e.g. `linohost env create NAME {app}`")
    if not module_installed(env_rec, app_rec.settings_module):
        raise UsageError(
            f"app {app!r} is not installed in environment {env!r} (module "
            f"{app_rec.settings_module} missing)")
    if db not in ("sqlite", "postgresql", "mysql"):
        raise UsageError(f"unknown database engine {db!r}")
    if domain:
        names.domain(domain)
    check_secret_key(ctx.cfg)
    db_name = f"lino_{name}" if db != "sqlite" else ""
    be = backend(db, ctx.cfg)
    be.check()
    if be.server and be.exists(db_name):
        raise Conflict(f"a {db} database or user named {db_name!r} already exists")
    prefix_site = not domain and ctx.cfg["mode"] == "prefix"
    if front_end is None:
        front_end = "extjs" if prefix_site else "react"
    if front_end not in render_site.FRONT_ENDS:
        raise UsageError(f"unknown front end {front_end!r}: use react or extjs")
    if prefix_site and front_end not in render_site.PREFIX_FRONT_ENDS:
        raise UsageError(
            f"the {front_end} front end does not work under a URL prefix: use --front-end "
            f"extjs, or domain mode (--domain HOST, or `linohost init --mode domain`)")
    return Site(name=name, app=app_rec.name, settings_module=app_rec.settings_module, env=env,
                db=db, title=title or name.replace("_", " ").title(),
                languages=tuple(languages), front_end=front_end, domain=domain,
                db_name=db_name, created=_now())


def check_secret_key(cfg):
    """Under the `env` policy a site cannot start without DJANGO_SECRET_KEY:
    say so before anything is made (the generated djangosite_local.py reads it)."""
    if cfg["secret_policy"] == "env" and not os.environ.get("DJANGO_SECRET_KEY"):
        raise UsageError("DJANGO_SECRET_KEY is not set, and this host's secret policy is "
                         "'env': set it, or change the policy with `linohost init --secret "
                         "derived`")


def new(ctx, site, data="demo"):
    """Create *site* (a record from :func:`plan_new`): files, database, data, caches.

    *data* is "demo", "empty", or a function ``data(ctx, site)`` that loads it."""
    host, system = ctx.host, ctx.system
    env = host.env(site.env)
    app = apps.resolve(site.app)
    project = host.site_dir(site.name)
    journal = Journal(host, "new", site.name).start()
    try:
        journal.record("tree", path=str(project))
        project.mkdir()
        for sub in ("media", "config", "apache"):
            (project / sub).mkdir()
        write_files(host, site)
        be = backend(site.db, ctx.cfg)
        if be.server:
            secret = host.secrets_dir / f"db-{site.name}"
            journal.record("file", path=str(secret))
            write_secret(secret, secrets.token_urlsafe(24), system.site_owner)
            journal.record("database", engine=site.db, name=site.db_name)
            ctx.progress(f"creating {site.db} database and user {site.db_name}")
            be.create(site.db_name, (host.secrets_dir / f"db-{site.name}").read_text().strip())
        if system.site_owner:
            chown_tree(project, system.site_owner)
        env = envs.ensure_app(ctx, env, app, project)
        template = demo.find(env, site) if data == "demo" else None
        if template:
            ctx.progress(f"{site.name}: the demo data made by prep today for "
                         f"{(template / demo.READY).read_text().strip()}")
            demo.load(ctx, site, template)
            tasks = []
        elif callable(data):                    # e.g. load an archive
            data(ctx, site)
            tasks = []
        else:
            tasks = [data]
        if not envs.has_static(env, app, site.front_end):
            tasks.append("static")
        tasks.append("cache")
        ctx.progress(f"initialising {site.name}: {', '.join(tasks)}")
        if tasks[0] in ("demo", "empty"):
            # Lino's kernel started before the data was there: the cache (actions made
            # from rows, e.g. excerpt types) must be built by a process that sees it.
            envs.run_site_tasks(ctx, env, project, tasks[:-1])
            envs.run_site_tasks(ctx, env, project, tasks[-1:])
        else:
            envs.run_site_tasks(ctx, env, project, tasks)
        if "static" in tasks:
            envs.mark_static(env, app, site.front_end)
        if tasks[:1] == ["demo"]:
            demo.save(ctx, env, site)
        record = host.registry_dir / f"{site.name}.toml"
        journal.record("file", path=str(record))
        atomic_write(record, site.dumps())
    except BaseException:
        ctx.progress(f"rolling back {site.name}")
        journal.undo(ctx)
        raise
    journal.commit()
    return site


def settings_context(host, site):
    env = host.env(site.env)
    be = backend(site.db, host.cfg)
    return dict(site_prefix=host.site_prefix(site), static_root=env.static_root,
                allowed_hosts=list(host.site_hostnames(site)),
                db_server=be.connect_args() if be.server else None)


def write_files(host, site):
    """Write the generated files of *site*'s project directory."""
    project = host.site_dir(site.name)
    for rel, text in render_site.project_files(site, **settings_context(host, site)).items():
        atomic_write(project / rel, text)


def write_settings(host, site, owner=None):
    """Regenerate settings.py of an existing site (after `init` changed the host)
    and restart its running process, if any, to apply it."""
    path = host.site_dir(site.name) / "settings.py"
    atomic_write(path, render_site.settings_py(site, **settings_context(host, site)))
    if owner:
        os.chown(path, *owner)
    process_backend(host.cfg).restart_site(host.site_dir(site.name))


def destruction_plan(host, site):
    """What `rm` destroys, in order, as journal steps."""
    steps = [{"kind": "file", "path": str(host.registry_dir / f"{site.name}.toml")}]
    if site.db != "sqlite":
        steps.append({"kind": "database", "engine": site.db, "name": site.db_name})
        steps.append({"kind": "file", "path": str(host.secrets_dir / f"db-{site.name}")})
    steps.append({"kind": "tree", "path": str(host.site_dir(site.name))})
    return steps


def describe(step):
    if step["kind"] == "database":
        return f"{step['engine']} database and user {step['name']}"
    return {"tree": "directory", "file": "file"}[step["kind"]] + " " + step["path"]


def rm(ctx, site):
    """Destroy *site*: registry record, database and user, secrets, directory."""
    journal = Journal(ctx.host, "rm", site.name).start(destruction_plan(ctx.host, site))
    errors = journal.undo(ctx, log=ctx.progress)
    if errors:
        raise Conflict(f"could not remove everything of {site.name}: {errors[0]}")


@undo_step("database")
def _undo_database(ctx, engine, name):
    backend(engine, ctx.cfg).drop(name)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
