"""Demo data made once per environment, app, front end, languages, engine and day.

The first demo site of an app in an environment runs Lino's `prep`; its database
and media are kept in ``envs/NAME/demo/`` and loaded natively into the next demo
sites of the same kind, which is several times faster than `prep` and gives the
same rows. The key holds the date, because Lino's demo data is dated relative
to today; a new environment (an upgrade) starts without templates.
"""

import datetime
import os
import shutil
from pathlib import Path

from ..backends.db import backend
from ..fs import remove_tree

READY = "ready"


def _kind(site):
    # The front end is a plugin with its own columns (React injects
    # system.SiteConfig.primereact_theme): an ExtJS site's data does not fit a React site.
    return (f"{site.app.replace('.', '_')}-{site.front_end}-{'_'.join(site.languages)}"
            f"-{site.db}")


def _dir(env, site, day=None):
    day = day or datetime.date.today().isoformat()
    return Path(env.path) / "demo" / f"{_kind(site)}-{day}"


def find(env, site):
    """The template for *site*, or None."""
    d = _dir(env, site)
    return d if (d / READY).exists() else None


def save(ctx, env, site):
    """Keep the demo data of the new *site* (just made by `prep`) as a template."""
    project = ctx.host.site_dir(site.name)
    final = _dir(env, site)
    tmp = final.with_name(final.name + ".partial")
    remove_tree(tmp)
    tmp.mkdir(parents=True, mode=0o700)
    try:
        be = backend(site.db, ctx.cfg)
        if be.server:
            be.dump(site.db_name, tmp / "db")
        else:
            be.dump(project / "default.db", tmp / "db")
        shutil.copytree(project / "media", tmp / "media", symlinks=True,
                        ignore=lambda d, names: ["cache"] if Path(d) == project / "media" else [])
        if (project / "dbhash.json").exists():
            shutil.copy2(project / "dbhash.json", tmp / "dbhash.json")
        (tmp / READY).write_text(site.name + "\n")
        remove_tree(final)
        os.replace(tmp, final)
    except BaseException:
        remove_tree(tmp)
        raise
    for old in final.parent.glob(f"{_kind(site)}-*"):      # earlier days' templates
        if old != final:
            remove_tree(old)


def load(ctx, site, template):
    """Put the template's data into the new *site* (its database exists, empty)."""
    from .users import own_project
    host, owner = ctx.host, ctx.system.owner_of(site.name)
    project = host.site_dir(site.name)
    remove_tree(project / "media")
    shutil.copytree(template / "media", project / "media", symlinks=True)
    if (template / "dbhash.json").exists():
        shutil.copy2(template / "dbhash.json", project / "dbhash.json")
    own_project(ctx, site.name)
    be = backend(site.db, ctx.cfg)
    if be.server:
        be.load(site.db_name, template / "db")
    else:
        be.load(project / "default.db", template / "db", owner)
