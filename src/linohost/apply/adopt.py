"""`linohost adopt`: take over a Lino project that linohost did not make.

Probe (its settings, read in its own interpreter), plan (every check before the
first write), apply: a verified linohost archive of the source in the backup
directory, restored as a new site with the source's settings as its own part,
then checked (the same rows per table). Nothing is ever written into the source.
"""

import json
import os
import re
import sqlite3
from importlib import resources
from pathlib import Path

from ..backends.db import backend
from ..errors import Conflict, StepFailed, UsageError
from ..fs import write_secret
from ..model import apps, getlino
from ..model.adoption import Plan, given_settings, key_row, own_part
from . import keys, sites
from .backup import _record, backup_dir, copy_files, staged
from .journal import Journal, undo_step
from .restore import restore

PROBE_LINE = "LINOHOST-PROBE "
PROBE_ERROR = "LINOHOST-PROBE-ERROR "


def find_python(project, layout=None):
    """The project's interpreter from its layout, or None: getlino's ``env`` link
    (to its own or a shared virtualenv), a virtualenv in or beside the directory,
    or the ``python-home`` of its mod_wsgi config."""
    if layout and (project / "env" / "bin" / "python").exists():
        return project / "env" / "bin" / "python"
    for d in (project, project.parent):
        for venv in ("env", ".venv", "venv", "virtualenv"):
            if (d / venv / "pyvenv.cfg").is_file() and (d / venv / "bin" / "python").exists():
                return d / venv / "bin" / "python"
    for conf in sorted((project / "apache").glob("*.conf")):
        m = re.search(r"python-home=(\S+)", conf.read_text(errors="replace"))
        if m and (Path(m.group(1)) / "bin" / "python").exists():
            return Path(m.group(1)) / "bin" / "python"
    return None


def probe(ctx, python, project, paths):
    """The project's settings as its own interpreter reads them (adopt_probe.py)."""
    script = resources.files("linohost.apply").joinpath("scripts/adopt_probe.py")
    try:
        out = ctx.system.run([python, "-I", "-B", str(script), project, *paths],
                             what="reading its settings", cwd=project, timeout=300).stdout
    except StepFailed as e:
        out = e.output or str(e)
    for line in reversed(out.splitlines()):
        if line.startswith(PROBE_LINE):
            return json.loads(line[len(PROBE_LINE):])
        if line.startswith(PROBE_ERROR):
            raise UsageError(f"{project}: its settings raise {line[len(PROBE_ERROR):]}")
    tail = out.strip().splitlines()[-1:] or ["no output"]
    raise UsageError(f"{project}: could not read its settings with {python}: {tail[0]}")


def plan(ctx, path, as_name=None, env=None, db="copy", python=None, paths=()):
    """Every check before anything is made; the :class:`Plan` of the adoption."""
    host = ctx.host
    project = Path(path).resolve()
    if not (project / "manage.py").is_file():
        raise UsageError(f"{project} is not a Lino project: it has no manage.py")
    if project == host.root.resolve() or host.root.resolve() in project.parents:
        raise UsageError(f"{project} is already under linohost (inside {host.root})")
    if db != "copy":
        raise UsageError("--db move is not supported yet: use --db copy")
    layout = getlino.layout_of(project)
    py = Path(python) if python else find_python(project, layout)
    if py is None:
        raise UsageError(f"{project}: no virtualenv found in or beside it: name its "
                         f"interpreter with --python")
    if not os.access(py, os.X_OK):
        raise UsageError(f"{py} is not an executable interpreter")
    extra = [str(Path(p).resolve()) for p in paths]
    if layout and str(layout.sites_base.resolve()) not in extra:
        extra.append(str(layout.sites_base.resolve()))    # its shared lino_local.settings
    found = probe(ctx, py, project, extra)
    kind = source_kind(found, layout)
    engine = found["database"]["ENGINE"]
    if not engine.endswith("sqlite3"):
        raise UsageError(f"{project}: adopting a {engine or 'missing'} database is not "
                         f"supported yet (only SQLite)")
    db_path = Path(found["database"]["NAME"])
    db_path = db_path if db_path.is_absolute() else project / db_path
    tables(db_path)                             # readable, or a UsageError
    admin = admin_of(db_path)
    if not admin:
        raise UsageError(f"{db_path}: no active admin user: Lino's commands run by "
                         f"linohost sign in as one (make one, then adopt)")
    app = next((a.name for a in apps.APPS.values()
                if a.settings_module == found["app_module"]), found["app_module"])
    settings_module = apps.resolve(app).settings_module
    name = as_name or project.name
    if env is None:
        env = next((e for e in host.env_names()
                    if sites.module_installed(host.env(e), settings_module)), None)
        if env is None:
            raise UsageError(f"no environment of this host has {settings_module}: create "
                             f"one, e.g. `linohost env create NAME {app}`")
    front = {"lino_react.react": "react", "lino.modlib.extjs": "extjs"}.get(
        found["default_ui"] or "", None)
    title = found["title"] if isinstance(found["title"], str) else None
    record = sites.plan_new(ctx, name, app, env, "sqlite", title,
                            found["languages"] or ["en"], "", front, admin=admin)
    own, notes = own_part(found, found["settings_file"], given_settings(ctx.cfg))
    key = found["secret_key"] if ctx.cfg["secret_policy"] != "env" else ""
    media = project / "media"
    kib = sum(p.stat().st_size for p in media.rglob("*") if p.is_file()) // 1024 \
        if media.is_dir() else 0
    return Plan(source=str(project), python=str(py), paths=extra,
                settings_file=found["settings_file"], db_path=str(db_path), media_kib=kib,
                site=record, own=own, notes=notes, kind=kind,
                config=str(layout.config or "") if kind == "getlino" else "", key=key,
                key_note=key_row(ctx.cfg["secret_policy"], found["secret_key"]))


def source_kind(found, layout):
    """getlino (its settings imported the layout's shared settings), seed (the shared
    djangosite_local hook), or project; from what the probe *found*."""
    shared = found.get("shared_settings")
    if layout and shared and Path(shared).resolve() == layout.shared_settings.resolve():
        return "getlino"
    return "seed" if found.get("seed_hook") else "project"


def admin_of(db_path):
    """The user name of the source's first active admin (Lino's user type 900), or None."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT username FROM users_user WHERE user_type = ? "
                          "AND username != '' ORDER BY id LIMIT 1", ("900",)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return row[0] if row else None


def tables(db_path):
    """{table: rows} of the SQLite database *db_path*, opened read-only."""
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise UsageError(f"cannot read the database {db_path}: {e}") from None
    try:
        names_ = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        # A table name cannot be a query parameter: quoted as an SQL identifier.
        return {t: con.execute('SELECT COUNT(*) FROM "%s"' % t.replace('"', '""')).fetchone()[0]
                for t in names_}
    except sqlite3.Error as e:
        raise UsageError(f"cannot read the database {db_path}: {e}") from None
    finally:
        con.close()


def archive_source(ctx, p):
    """A verified linohost archive of the source (database, media, config, settings)
    in the host's backup directory; return its path."""
    host, site = ctx.host, p.site
    with staged(ctx, site.name, backup_dir(host)) as a:
        be = backend("sqlite", ctx.cfg)
        native = f"database/{be.dump_name}"
        (a.stage / "database").mkdir()
        ctx.progress(f"{site.name}: copying the database {p.db_path}")
        be.dump(p.db_path, a.stage / native)
        copy_files(a.stage / "files", p.settings_file, Path(p.source))
        freeze = ctx.system.run([p.python, "-m", "pip", "freeze", "--all"],
                                what="pip freeze").stdout.splitlines()
        a.seal(site=_record(site), env=site.env, packages=freeze, engine="sqlite",
               native=native, portable=False)
    path = a.path
    ctx.progress(f"{site.name}: archive of the source {path} ({path.stat().st_size // 1024} KiB)")
    return path


def adopt(ctx, p):
    """Carry out the plan *p*: archive, restore as a new site, check; return
    (site, archive path, {table: rows}). A failure leaves no site behind."""
    host, name = ctx.host, p.site.name
    before = tables(p.db_path)
    path = archive_source(ctx, p)
    journal = Journal(host, "adopt", name).start()
    journal.record("adopted_site", site=name)
    try:
        keep_key(ctx, journal, name, p.key)
        ctx.progress(f"{name}: making the site from the archive")
        site = restore(ctx, path, as_name=name, title=p.site.title, own=p.own)
        ctx.progress(f"{name}: checking its rows")
        after = tables(host.site_dir(name) / "default.db")
        if after != before:
            odd = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
            raise StepFailed(f"{name}: adopted rows differ from the source's in {odd[0]} "
                             f"({before.get(odd[0])} before, {after.get(odd[0])} after)")
    except BaseException:
        ctx.progress(f"{name}: adopting failed; removing what was made")
        journal.undo(ctx, log=ctx.progress)
        raise
    journal.commit()
    return site, path, before


def keep_key(ctx, journal, name, key):
    """Store the source's SECRET_KEY as the key of the site to be made (root's,
    0600; the site's own key file is written from it, see keys.site_key)."""
    if not key:
        return
    path = keys.kept_file(ctx.host, name)
    journal.record("file", path=str(path))
    write_secret(path, key)


@undo_step("adopted_site")
def _undo_adopted_site(ctx, site):
    """Remove a site whose adoption did not finish (made, but not checked)."""
    if ctx.host.has_site(site):
        sites.rm(ctx, ctx.host.site(site))
    elif ctx.host.site_dir(site).exists():
        raise Conflict(f"{ctx.host.site_dir(site)} is left without a registry record")

