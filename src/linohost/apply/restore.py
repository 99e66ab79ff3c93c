"""Restoring archives: into a new site (`--as`, `clone`) or over a site (`--force`)."""

import dataclasses
import os
import re
import shutil
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import PurePosixPath, Path

from ..backends.db import ENGINES, backend
from ..backends.process import process_backend
from ..errors import Conflict, UsageError
from ..model import archive
from ..model.archive import Manifest
from ..model.site import Site
from . import envs, site_settings, sites, users, warm
from .backup import LINO_INI, backup, backup_dir, fresh_dir
from ..fs import remove_tree
from .journal import Journal, undo_step
from .maintenance import maintenance


class Damaged(UsageError):
    pass


@contextmanager
def opened(host, path):
    """Extract and verify the archive *path*; yield (Manifest, directory)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such archive: {path}")
    # The unpacked copy holds the site's data: a kill must not leave it behind.
    journal = Journal(host, "unpack", f"{os.getpid()}-{id(path)}").start()
    work = fresh_dir(backup_dir(host), ".restore-", journal)
    try:
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    p = PurePosixPath(m.name)
                    if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                        raise Damaged(f"{path} is not a linohost archive: unsafe member {m.name}")
                if archive.MANIFEST not in [m.name for m in members]:
                    raise Damaged(f"{path} is not a linohost archive: no {archive.MANIFEST}")
                tar.extractall(work, members=members, **_filter())
            manifest = Manifest.loads((work / archive.MANIFEST).read_text())
        except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, TypeError) as e:
            raise Damaged(f"{path} is damaged or not a linohost archive: {e}") from None
        found = {str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()}
        found.discard(archive.MANIFEST)
        if found != set(manifest.checksums):
            odd = sorted(found ^ set(manifest.checksums))[0]
            raise Damaged(f"{path} is damaged: {odd} missing or not in the manifest")
        for rel, digest in manifest.checksums.items():
            if archive.sha256(work / rel) != digest:
                raise Damaged(f"{path} is damaged: checksum mismatch for {rel}")
        site_of(manifest, path)
        yield manifest, work
    finally:
        remove_tree(work)
        journal.commit()


def site_of(manifest, path=""):
    """The archived site's record, once the manifest is known to point only inside
    the archive: checksums say nothing of an archive made to harm (its own checksums)."""
    fields = {f.name for f in dataclasses.fields(Site)}
    try:
        site = Site(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in manifest.site.items() if k in fields})
    except (TypeError, AttributeError) as e:
        raise Damaged(f"{path} is not a linohost archive: bad site record ({e})") from None
    wrong = None
    if not isinstance(site.name, str) or not _SITE_NAME.match(site.name):
        wrong = f"site name {site.name!r}"
    elif manifest.engine not in ENGINES or site.db != manifest.engine:
        wrong = f"engine {manifest.engine!r}"
    elif not isinstance(site.plugins, tuple) or not all(
            isinstance(m, str) and _MODULE.match(m) for m in site.plugins):
        wrong = f"plugins {site.plugins!r}"
    elif manifest.native and manifest.native not in manifest.checksums:
        wrong = f"database member {manifest.native!r}"
    elif manifest.portable and "portable/restore.py" not in manifest.checksums:
        wrong = "portable dump without restore.py"
    if wrong:
        raise Damaged(f"{path} is not a linohost archive: bad manifest: {wrong}")
    return site


_SITE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
#: A site's own plugin: a dotted module name (Lino imports it).
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


def _filter():
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def load_into(ctx, site, manifest, data, db_kept=False):
    """Put the archived files and data into the (existing, empty-database) *site*
    (*db_kept*: its database holds the data already; only the files)."""
    host, system = ctx.host, ctx.system
    project = host.site_dir(site.name)
    for sub in ("media", "config"):
        remove_tree(project / sub)
        src = data / "files" / sub
        if src.is_dir():
            shutil.copytree(src, project / sub, symlinks=True)
        else:
            (project / sub).mkdir()
    ini = data / "files" / LINO_INI
    if ini.is_file() and not (project / LINO_INI).exists():   # a copy's own settings
        shutil.copy2(ini, project / LINO_INI)
    users.own_project(ctx, site.name)
    be = backend(site.db, ctx.cfg)
    if db_kept:
        rementioned(ctx, site, host.env(site.env))
    elif site.db == manifest.engine and manifest.native:
        ctx.progress(f"{site.name}: loading the {site.db} database")
        if be.server:       # as the site's own database user: its rights, not the admin's
            password = (host.secrets_dir / f"db-{site.name}").read_text().strip()
            be.load(site.db_name, data / manifest.native, password)
        else:
            be.load(project / "default.db", data / manifest.native, system.owner_of(site.name))
        rementioned(ctx, site, host.env(site.env))
    elif manifest.portable:
        ctx.progress(f"{site.name}: loading Lino's portable dump into {site.db}")
        load_portable(ctx, site, host.env(site.env), data / "portable")
    else:
        raise UsageError(f"the archive has no portable dump: it restores only on {manifest.engine}")



def load_portable(ctx, site, env, dump):
    """Load Lino's portable dump *dump* into *site* with the code of *env*.

    The dump's restore.py recreates the tables and loads the rows; then Lino's
    memo checker rebuilds the mentions it derives from texts, which the dump
    does not bring back faithfully (Noi: 4 of 25). Nothing else is "fixed":
    other checkers would change the data (e.g. add rows for files in uploads/)."""
    host, system = ctx.host, ctx.system
    journal = Journal(host, "load", site.name).start()
    work = fresh_dir(host.home_dir, f"load-{site.name}-", journal)
    try:
        shutil.copytree(dump, work / "d")
        owner = system.owner_of(site.name)
        if owner:
            users.own_tree(work, *owner)
        warm.run_manage(ctx, site, ["run", work / "d" / "restore.py", "--noinput"],
                        what=f"manage.py run ({site.name})", env=env)
        rementioned(ctx, site, env)
    finally:
        remove_tree(work)
        journal.commit()


def rementioned(ctx, site, env):
    """Rebuild the previews and mentions Lino derives from texts: they hold the
    site's own URLs (``href="/PREFIX/#/api/..."``), and a copy under another name or
    host name gets its own (siteinit's task ``previews``)."""
    envs.run_site_tasks(ctx, env, ctx.host.site_dir(site.name), ["previews"], site=site)


def _refresh(ctx, site):
    """Caches for the restored data, and a fresh process for the site."""
    host = ctx.host
    env = host.env(site.env)
    envs.run_site_tasks(ctx, env, host.site_dir(site.name), ["cache"], site=site)
    process_backend(host).restart_site(site.name)


def restore(ctx, path, as_name=None, force=False, engine=None, title=None, own=None,
            db_kept="", held=""):
    """Restore the archive *path*; return the site record. A site under another name
    than the archive's gets the title of its own name unless *title* is given; a new
    site's own settings part is the archive's, or *own* if given (an adopted site's);
    *db_kept*: the name of the server database the new site keeps as it is (an
    adopted site's, `adopt --db move`): only the files are restored; *held*: a new site
    stays under its maintenance page (see sites.new)."""
    host = ctx.host
    with opened(host, path) as (manifest, data):
        original = site_of(manifest, path)
        name = as_name or original.name
        if engine and engine != manifest.engine and not manifest.portable:
            raise UsageError(f"the archive holds no portable dump: it restores only on "
                             f"{manifest.engine}, not {engine}")
        if host.has_site(name):
            if not force:
                raise Conflict(f"site {name!r} exists: restore --as NEWNAME, or --force to "
                               f"replace it (backed up first)")
            return _restore_over(ctx, host.site(name), manifest, data, engine, path)
        return _restore_new(ctx, name, original, manifest, data, engine, title, own, db_kept,
                            held)


def _restore_new(ctx, name, original, manifest, data, engine, title=None, own=None,
                 db_kept="", held=""):
    host = ctx.host
    env = original.env if original.env in host.env_names() else ctx.cfg["default_env"]
    if env != original.env:
        ctx.progress(f"environment {original.env} does not exist here: using {env}")
    if title is None and name == original.name:
        title = original.title
    record = sites.plan_new(
        ctx, name, original.app, env, engine or manifest.engine, title,
        original.languages, original.domain if name == original.name else "",
        original.front_end, admin=original.admin)
    record = dataclasses.replace(record, plugins=original.plugins)   # (they made its tables)
    if db_kept:
        record = dataclasses.replace(record, db_name=db_kept)
    settings = data / "files" / "settings.py"       # its own part comes along
    if own is None:
        own = site_settings.own_of_text(settings.read_text(encoding="utf-8")) \
            if settings.is_file() else ""
    return sites.new(ctx, record, own=own, db_kept=bool(db_kept), held=held,
                     data=lambda ctx, site: load_into(ctx, site, manifest, data, bool(db_kept)))


def _restore_over(ctx, site, manifest, data, engine, path):
    host = ctx.host
    if engine and engine != site.db:
        raise UsageError(f"site {site.name} runs on {site.db}: restore over it on {site.db}, "
                         f"or restore --as NEWNAME --db {engine}")
    if manifest.site.get("app") != site.app:
        raise UsageError(f"the archive holds a {manifest.site.get('app')} site, "
                         f"{site.name} runs {site.app}")
    ctx.progress(f"{site.name}: backing up what is there before replacing it")
    safety = backup(ctx, site)
    journal = Journal(host, "restore", site.name).start()
    try:
        journal.record("reload_archive", site=site.name, archive=str(safety))
        with maintenance(host, site, "restored", journal):
            _reset_database(ctx, site)
            load_into(ctx, site, manifest, data)
            _refresh(ctx, site)
    except BaseException:
        ctx.progress(f"{site.name}: restoring failed; putting back what was there")
        journal.undo(ctx, log=ctx.progress)
        raise
    journal.commit()
    ctx.progress(f"{site.name}: restored from {path} (what was there: {safety})")
    return site


def _reset_database(ctx, site):
    """An empty database for *site*, same name, user and password."""
    be = backend(site.db, ctx.cfg)
    if be.server:
        password = (ctx.host.secrets_dir / f"db-{site.name}").read_text().strip()
        be.drop(site.db_name)
        be.create(site.db_name, password, note=ctx.host.db_note(site.name))


@undo_step("reload_archive")
def _undo_reload_archive(ctx, site, archive):
    """Put the archive taken before a forced restore back into *site*."""
    if not ctx.host.has_site(site):            # removed since: nothing to put back
        return
    s = ctx.host.site(site)
    with opened(ctx.host, archive) as (manifest, data):
        _reset_database(ctx, s)
        load_into(ctx, s, manifest, data)
        _refresh(ctx, s)


def clone(ctx, src, dst, engine=None, title=None):
    """Backup of *src* restored as *dst*: new database, user, password and secret key.
    Everything about *dst* is checked before the backup (a refusal changes nothing)."""
    site = ctx.host.site(src)
    if ctx.host.has_site(dst):
        raise Conflict(f"site {dst!r} exists: clone to another name (or remove {dst} "
                       f"first: `linohost rm {dst}`)")
    sites.plan_new(ctx, dst, site.app, site.env, engine or site.db, title, site.languages,
                   "", site.front_end)
    archive_path = backup(ctx, site)
    return restore(ctx, archive_path, as_name=dst, engine=engine, title=title)
