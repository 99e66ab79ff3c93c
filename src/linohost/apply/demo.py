"""Demo data made once per environment, app, front end, languages, engine and day.

The first demo site of an app in an environment runs Lino's `prep`; its database
and media are kept in ``envs/NAME/demo/`` and loaded natively into the next demo
sites of the same kind, which is several times faster than `prep` and gives the
same rows. The key holds the date, because Lino's demo data is dated relative
to today; a new environment (an upgrade) starts without templates.

A React template also keeps its site's page cache (``media/cache``) when it holds
nothing of that site's own (siteinit.py's ``cache`` task says so: React's layouts name
no URL prefix, and they were built as the untitled site's): the next sites of its kind
have the same structure and data, so they take it instead of building it (about 3 s
of a `new`), as long as the environment's packages are those it was built with.
"""

import datetime
import os
import shutil
from pathlib import Path

from ..backends.db import backend
from ..fs import remove_tree

READY = "ready"
#: siteinit.py's line after a cache it built as the untitled site's.
UNTITLED = "cache: untitled"
#: Where Lino keeps the time its cache was built for (the environment's stamp).
VERSION = "lino_version.txt"
#: In a template with a page cache: the URL layout of the site it was built for.
LAYOUT = "cache-layout"


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


def save(ctx, env, site, cache=False):
    """Keep the demo data of the new *site* (just made by `prep`) as a template, and
    its page cache too if *cache* (it holds nothing of the site's own)."""
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
        keep = cache and site.front_end == "react" and (project / VERSION).is_file()
        shutil.copytree(project / "media", tmp / "media", symlinks=True,
                        ignore=lambda d, names: ["cache"] if Path(d) == project / "media"
                        and not keep else [])
        if keep:
            shutil.copy2(project / VERSION, tmp / VERSION)
            (tmp / LAYOUT).write_text(_layout(ctx.host, site))
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


def load(ctx, env, site, template):
    """Put the template's data into the new *site* (its database exists, empty), and
    its page cache where it has one built with *env* as it is; return whether it did."""
    from .users import own_project
    host, owner = ctx.host, ctx.system.owner_of(site.name)
    project = host.site_dir(site.name)
    cached = (template / LAYOUT).is_file() \
        and (template / LAYOUT).read_text() == _layout(host, site) \
        and int((template / VERSION).stat().st_mtime) == stamp(env)
    remove_tree(project / "media")
    shutil.copytree(template / "media", project / "media", symlinks=True,
                    ignore=lambda d, names: ["cache"] if Path(d) == template / "media"
                    and not cached else [])
    for name in ("dbhash.json", *([VERSION] if cached else [])):
        if (template / name).exists():
            shutil.copy2(template / name, project / name)
    own_project(ctx, site.name)
    be = backend(site.db, ctx.cfg)
    if be.server:
        be.load(site.db_name, template / "db")
    else:
        be.load(project / "default.db", template / "db", owner)
    return cached


def _layout(host, site):
    """Whether *site* is served under a prefix or at the root of a host name."""
    return "root" if host.site_prefix(site) == "/" else "prefix"


def stamp(env):
    """The lino_version every site of *env* builds its cache with (siteinit.py): when
    its packages last changed."""
    purelib = next(Path(env.path).glob("lib/python3*/site-packages"))
    return int(purelib.stat().st_mtime)
