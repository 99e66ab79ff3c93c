"""Backups: one verified archive per site, and the retention policy (`prune`)."""

import datetime
import os
import secrets
import shutil
import tarfile
from pathlib import Path

from .. import __version__
from ..backends.db import backend
from ..model import archive
from ..model.archive import Manifest
from ..fs import remove_tree
from . import warm
from .journal import Journal


def backup_dir(host):
    d = host.cfg["backup.dir"]
    return Path(d) if d else host.root / "backups"


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


def backup(ctx, site, to=None, portable=True):
    """Write an archive of *site* into *to* (default: the host's backup dir); return its path."""
    host, system = ctx.host, ctx.system
    dest_dir = Path(to) if to else backup_dir(host)
    dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    clean_partials(dest_dir)
    project = host.site_dir(site.name)
    env = host.env(site.env)
    be = backend(site.db, ctx.cfg)
    now = datetime.datetime.now(datetime.timezone.utc)
    path = dest_dir / archive.file_name(site.name, now)
    partial = dest_dir / f".{path.name}.partial"
    # Killed anywhere, the next command's repair removes what this made (never the
    # archive once it has its name: it is complete then).
    journal = Journal(host, "backup", site.name).start()
    journal.record("file", path=str(partial))
    stage = fresh_dir(dest_dir, ".staging-", journal)
    try:
        (stage / "database").mkdir()
        native = f"database/{be.dump_name}"
        ctx.progress(f"{site.name}: dumping the {site.db} database")
        if be.server:
            be.dump(site.db_name, stage / native)
        else:
            be.dump(project / "default.db", stage / native)
        if portable:
            ctx.progress(f"{site.name}: Lino's portable dump")
            work = fresh_dir(host.home_dir, f"dump-{site.name}-", journal)
            try:
                owner = system.owner_of(site.name)
                if owner:
                    os.chown(work, *owner)
                warm.run_manage(ctx, site, ["dump2py", "--noinput", "--overwrite", work / "d"],
                                what=f"dump2py ({site.name})")
                shutil.copytree(work / "d", stage / "portable")
            finally:
                remove_tree(work)
        files = stage / "files"
        files.mkdir()
        shutil.copy2(project / "settings.py", files / "settings.py")
        for sub in ("media", "config"):
            if (project / sub).is_dir():
                shutil.copytree(project / sub, files / sub, symlinks=True, ignore=_no_cache)
        freeze = system.run([env.bin_python, "-m", "pip", "freeze", "--all"],
                            what="pip freeze").stdout.splitlines()
        members = sorted(p for p in stage.rglob("*") if p.is_file())
        manifest = Manifest(
            site=_record(site), env=site.env, packages=freeze, engine=site.db,
            created=now.isoformat(timespec="seconds"), linohost=__version__,
            native=native, portable=portable,
            checksums={str(p.relative_to(stage)): archive.sha256(p) for p in members})
        (stage / archive.MANIFEST).write_text(manifest.dumps())
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(stage / archive.MANIFEST, archive.MANIFEST)
            for p in members:
                tar.add(p, str(p.relative_to(stage)), recursive=False)
            raw.flush()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)                # complete or absent, never half
    except BaseException:
        journal.undo(ctx)
        raise
    finally:
        remove_tree(stage)
    journal.commit()
    ctx.progress(f"{site.name}: archive {path} ({path.stat().st_size // 1024} KiB)")
    return path


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
