"""Backups: one verified archive per site, and the retention policy (`prune`)."""

import datetime
import json
import os
import secrets
import shutil
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

from .. import __version__
from ..backends.db import backend
from ..model import archive
from ..model.archive import Manifest
from ..fs import atomic_write, remove_tree
from . import warm
from .journal import Journal


def backup_dir(host):
    return host.backups_dir


def record_result(host, name, error=None):
    """Note in run/backups.json that *name*'s backup succeeded now (or failed with
    *error*): the keeper's alerts read it."""
    try:
        results = json.loads(host.backup_results.read_text())
    except (OSError, ValueError):
        results = {}
    entry = results.setdefault(name, {})
    if error is None:
        entry.update(ok=time.time(), error=None)
    else:
        entry.update(failed=time.time(), error=str(error))
    atomic_write(host.backup_results, json.dumps(results), mode=0o600)


def fresh_dir(parent, prefix, journal):
    """A new private directory under *parent*, recorded in *journal* before it is made
    (a kill in between leaves a step that finds nothing, never a directory unrecorded)."""
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        d = parent / f"{prefix}{secrets.token_hex(4)}"
        if not d.exists():
            break
    journal.record("tree", path=str(d))
    d.mkdir(mode=0o700)
    return d


#: Plugin settings Lino reads from a project directory (as getlino writes them).
LINO_INI = "lino.ini"


class Staged:
    """An archive being made: its staging directory, final and partial names, time."""

    def __init__(self, dest_dir, name, journal):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.path = dest_dir / archive.file_name(name, self.now)
        self.partial = dest_dir / f".{self.path.name}.partial"
        journal.record("file", path=str(self.partial))
        self.stage = fresh_dir(dest_dir, ".staging-", journal)
        self.journal = journal

    def seal(self, **manifest):
        """The archive, complete, under its name (see :func:`seal`)."""
        seal(self.stage, self.partial, self.path,
             created=self.now.isoformat(timespec="seconds"), **manifest)


@contextmanager
def staged(ctx, name, dest_dir):
    """Make an archive of *name* in *dest_dir*: the body fills ``Staged.stage`` and
    seals it. Killed anywhere, the next command's repair removes what this made (never
    the archive once it has its name: it is complete then); failing, it is undone now."""
    dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    clean_partials(dest_dir)
    journal = Journal(ctx.host, "backup", name).start()
    made = Staged(dest_dir, name, journal)
    try:
        yield made
    except BaseException:
        journal.undo(ctx)
        raise
    finally:
        remove_tree(made.stage)
    journal.commit()


def copy_files(files, settings_file, project):
    """A site's files into an archive's *files* dir: its settings, its own plugin
    settings (lino.ini), media/ (without the rebuildable cache) and config/."""
    files.mkdir()
    shutil.copy2(settings_file, files / "settings.py")
    if (project / LINO_INI).is_file():
        shutil.copy2(project / LINO_INI, files / LINO_INI)
    for sub in ("media", "config"):
        if (project / sub).is_dir():
            shutil.copytree(project / sub, files / sub, symlinks=True, ignore=_no_cache)


def backup(ctx, site, to=None, portable=True):
    """Write an archive of *site* into *to* (default: the host's backup dir); return its path."""
    host, system = ctx.host, ctx.system
    project = host.site_dir(site.name)
    env = host.env(site.env)
    be = backend(site.db, ctx.cfg)
    with staged(ctx, site.name, Path(to) if to else backup_dir(host)) as a:
        (a.stage / "database").mkdir()
        native = f"database/{be.dump_name}"
        ctx.progress(f"{site.name}: dumping the {site.db} database")
        if be.server:
            be.dump(site.db_name, a.stage / native)
        else:
            be.dump(project / "default.db", a.stage / native)
        if portable:
            ctx.progress(f"{site.name}: Lino's portable dump")
            work = fresh_dir(host.home_dir, f"dump-{site.name}-", a.journal)
            try:
                owner = system.owner_of(site.name)
                if owner:
                    os.chown(work, *owner)
                warm.run_manage(ctx, site, ["dump2py", "--noinput", "--overwrite", work / "d"],
                                what=f"dump2py ({site.name})")
                shutil.copytree(work / "d", a.stage / "portable")
            finally:
                remove_tree(work)
        copy_files(a.stage / "files", project / "settings.py", project)
        freeze = system.run([env.bin_python, "-m", "pip", "freeze", "--all"],
                            what="pip freeze").stdout.splitlines()
        a.seal(site=_record(site), env=site.env, packages=freeze, engine=site.db,
               native=native, portable=portable)
    path = a.path
    if to is None:
        record_result(host, site.name)
    ctx.progress(f"{site.name}: archive {path} ({path.stat().st_size // 1024} KiB)")
    return path


def seal(stage, partial, path, **manifest):
    """Tar the staging directory *stage* with its manifest into *partial*, then
    rename it to *path*: the archive is complete or absent, never half."""
    members = sorted(p for p in stage.rglob("*") if p.is_file())
    m = Manifest(linohost=__version__, **manifest,
                 checksums={str(p.relative_to(stage)): archive.sha256(p) for p in members})
    (stage / archive.MANIFEST).write_text(m.dumps())
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(stage / archive.MANIFEST, archive.MANIFEST)
        for p in members:
            tar.add(p, str(p.relative_to(stage)), recursive=False)
        raw.flush()
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)


def _no_cache(directory, names):
    """media/cache is rebuilt from the code: not worth archiving."""
    return ["cache"] if Path(directory).name == "media" and "cache" in names else []


def _record(site):
    import dataclasses
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(site).items()}


def archives(host, directory=None):
    """{site: [(when, path), ...]} of the archives in the backup directory."""
    out = {}
    d = Path(directory) if directory else backup_dir(host)
    for p in d.glob(f"*{archive.SUFFIX}") if d.is_dir() else ():
        parsed = archive.parse_name(p.name)
        if parsed:
            out.setdefault(parsed[0], []).append((parsed[1], p))
    return out


def prune(ctx, dry_run=False):
    """Delete the archives the retention policy does not keep; return them."""
    cfg = ctx.cfg
    doomed = []
    for site, items in sorted(archives(ctx.host).items()):
        kept = archive.keep(items, cfg["backup.keep_daily"], cfg["backup.keep_weekly"])
        doomed += [p for when, p in sorted(items) if (when, p) not in kept]
    for p in doomed:
        if not dry_run:
            p.unlink()
    return doomed


def clean_partials(d):
    """Remove what a killed backup left in *d*: partial archives, staging directories."""
    for p in d.glob(".*"):
        if p.name.startswith((".staging-",)) or p.name.endswith(".partial"):
            remove_tree(p)
