"""Environments: virtualenvs of Lino, its apps and front ends, shared by sites."""

import datetime
import glob
import shutil
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from ..errors import Conflict, StepFailed
from ..model import apps, names
from ..model.env import Env
from ..model.packages import canonical
from ..fs import atomic_write
from .journal import Journal
from . import pagecache, warm
from .users import own_tree

#: What the keeper's workers serve with: waitress (HTTP, WSGI), uvicorn and wsproto
#: (the websockets of sites with channels): {package: its module}.
WORKER_SERVERS = {"waitress": "waitress", "uvicorn": "uvicorn", "wsproto": "wsproto"}
#: Always installed: the framework, both front ends, the database drivers.
BASE_PACKAGES = ("lino", "lino-react", "lino-extjs", "psycopg[binary]", "PyMySQL",
                 "setuptools<80", *WORKER_SERVERS)


def site_script():
    return resources.files("linohost.apply").joinpath("scripts/siteinit.py").read_text()


def package_list(requested):
    """Base packages plus *requested*, where app short names stand for their packages."""
    out = list(BASE_PACKAGES)
    for p in requested:
        for q in (apps.APPS[p].packages if p in apps.APPS else (p,)):
            if q not in out:
                out.append(q)
    return out


def pip(ctx, env_path, args, what):
    return ctx.system.run([f"{env_path}/bin/python", "-m", "pip", "--disable-pip-version-check",
                           "--no-input", "-q", *args], what=what)


def create(ctx, name, requested):
    """Create environment *name* with *requested* packages (or app short names)."""
    host = ctx.host
    names.env_name(name)
    path = host.envs_dir / name
    if path.exists():
        raise Conflict(f"environment {name!r} already exists ({path})")
    python = ctx.cfg["python"]
    if not Path(python).exists():
        raise StepFailed(f"base Python {python} not found (host config key `python`)")
    packages = package_list(requested)
    journal = Journal(host, "env-create", name).start()
    try:
        journal.record("tree", path=str(path))
        ctx.progress(f"creating virtualenv {path} from {python}")
        ctx.system.run([python, "-m", "venv", path], what="python -m venv")
        ctx.progress(f"installing {' '.join(packages)}")
        pip(ctx, path, ["install", "-U", "pip", "wheel"], "pip install pip")
        pip(ctx, path, ["install", *packages], "pip install")
        static = path / "static"
        static.mkdir()          # root's, readable by all: every site and the web server
        env = Env(name=name, path=str(path), python=python, packages=tuple(packages),
                  created=_now())
        save(env)
    except BaseException:
        journal.undo(ctx)
        raise
    journal.commit()
    return env


def installed(env):
    """{canonical name: version} of what *env* has installed, read from the names of
    its ``*.dist-info`` directories (nothing of it runs as root)."""
    out = {}
    for d in glob.glob(f"{env.path}/lib/python3*/site-packages/*.dist-info"):
        name, _, version = Path(d).name[:-len(".dist-info")].rpartition("-")
        out[canonical(name)] = version
    return out


def remove(ctx, name):
    """Remove environment *name*, which no site uses."""
    host = ctx.host
    env = host.env(name)
    users = sorted(s.name for s in host.sites() if s.env == name)
    if users:
        raise Conflict(f"environment {name!r} has sites ({', '.join(users[:3])}"
                       f"{', ...' if len(users) > 3 else ''}): remove or upgrade them first")
    if name == ctx.cfg["default_env"]:
        raise Conflict(f"environment {name!r} is the host's default_env (host config key)")
    ctx.progress(f"removing environment {name} ({env.path})")
    gone = host.envs_dir / f".removed-{name}"         # at once no longer an environment
    shutil.rmtree(gone, ignore_errors=True)         # (what a killed `env rm` left)
    Path(env.path).rename(gone)
    shutil.rmtree(gone)


def save(env):
    atomic_write(Path(env.path) / Env.FILENAME, env.dumps())


def ensure_worker_server(ctx, env):
    """Install what the keeper's workers serve with (:data:`WORKER_SERVERS`) into an
    environment made before they needed it."""
    missing = [p for p, module in WORKER_SERVERS.items() if not glob.glob(
        f"{env.path}/lib/python3*/site-packages/{module}/__init__.py")]
    if not missing:
        return
    ctx.progress(f"installing {' '.join(missing)} into environment {env.name} for the keeper")
    pip(ctx, env.path, ["install", *missing], f"pip install {' '.join(missing)}")


def ensure_app(ctx, env, app, project_dir):
    """Install what *app* needs into *env*, once per environment (Lino's `install`)."""
    if app.name in env.apps_installed:
        return env
    ctx.progress(f"installing the requirements of {app.name} into environment {env.name}")
    out = run_site_tasks(ctx, env, project_dir, ["requirements"]).stdout
    reqs = [line.split(":", 1)[1].strip() for line in out.splitlines()
            if line.startswith("requirement:")]
    if reqs:
        pip(ctx, env.path, ["install", *reqs], f"pip install {' '.join(reqs)}")
    env = _replace(env, apps_installed=env.apps_installed + (app.name,))
    save(env)
    return env


def run_site_tasks(ctx, env, project_dir, tasks, site=None):
    """Run siteinit tasks for the site in *project_dir* as its user (warm, forked from
    its group's zygote, when *site* (its record) is given, in *env*, and a keeper can)."""
    name = project_dir.name
    what = f"{' '.join(tasks)} ({name})"
    with _static_lent(ctx, env, name, "static" in tasks):
        done = None
        if site is not None and site.env == env.name:
            done = warm.run_captured(ctx, site, [project_dir, *tasks], script=site_script(),
                                     what=what)
        if done is None:
            # One hash seed for every site: Django and Lino create content types (and
            # other rows) in an order that follows set iteration, so that sites made
            # alike hold alike rows where Lino's start-up reads, and can share a
            # zygote (zygotes.py).
            done = ctx.system.run([env.bin_python, "-c", site_script(), project_dir, *tasks],
                                  as_site=name, cwd=project_dir, what=what,
                                  env={"PYTHONHASHSEED": "0"})
    if "cache" in tasks:
        pagecache.share(ctx.host, project_dir)
    return done


@contextmanager
def _static_lent(ctx, env, site, lend):
    """As root, the environment's static files are root's and readable by all; while
    *site* collects them (the first site of its app and front end), they are its."""
    owner = ctx.system.owner_of(site) if lend else None
    static = Path(env.static_root)
    if owner:
        own_tree(static, *owner)
    try:
        yield
    finally:
        if owner:
            own_tree(static, 0, 0, files=(0o022, 0o444), dirs=(0o022, 0o555))


def static_key(app, front_end):
    """What `static_apps` records: collectstatic gathers the files of the site's
    plugins, and the front end is one (React's bundle is not among ExtJS's files)."""
    return f"{app.name}+{front_end}"


def has_static(env, app, front_end):
    return static_key(app, front_end) in env.static_apps


def mark_static(env, app, front_end):
    key = static_key(app, front_end)
    if key not in env.static_apps:
        env = _replace(env, static_apps=env.static_apps + (key,))
        save(env)
    return env


def _replace(env, **kw):
    import dataclasses
    return dataclasses.replace(env, **kw)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

