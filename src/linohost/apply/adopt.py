"""`linohost adopt`: take over a Lino project that linohost did not make.

Probe (its settings, read in its own interpreter), plan (every check before the
first write), apply: a verified linohost archive of the source in the backup
directory, restored as a new site with the source's settings as its own part,
then checked: the same rows per table, and the same answers to its first pages and
its JSON API signed in as its first admin (adopt_probe.py --answers, run in each site's
own interpreter).
Nothing is ever written into the source.
What was adopted from where is kept in ``ROOT/adopted/SITE/adoption.toml``: a source
is adopted once (while its site exists), and `--getlino --all` can be run again.
"""

import dataclasses
import datetime
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import tomli_w

from ..backends.db import backend
from ..errors import Conflict, LinohostError, StepFailed, UsageError
from ..fs import atomic_write, write_secret
from ..model import apps, getlino, packages
from ..model.adoption import Plan, given_settings, key_row, own_part
from ..render.site import FRONT_ENDS
from . import envs, keys, maintenance, movedb, oldservices, sites
from .backup import _record, backup_dir, copy_files, staged
from .journal import Journal, undo_step
from .restore import restore
from .sourcedb import Database

PROBE_LINE = "LINOHOST-PROBE "
PROBE_ERROR = "LINOHOST-PROBE-ERROR "
RECORD = "adoption.toml"


class AlreadyAdopted(Conflict):
    """The source is the origin of a site of this host."""

    def __init__(self, source, site):
        super().__init__(f"{source} is already adopted as site {site}")
        self.site = site


def adoptions(host):
    """{source directory: site} of the adoptions whose site still exists (the site
    made then, not a later one of its name)."""
    out = {}
    for path in sorted(host.adopted_dir.glob(f"*/{RECORD}")):
        name = path.parent.name
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            if host.has_site(name) and host.site(name).created == data["created"]:
                out[data["source"]] = name
        except (OSError, KeyError, tomllib.TOMLDecodeError, LinohostError):
            continue
    return out


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


def probe(ctx, python, project, paths, answers_of=None, as_site=None):
    """The project's settings as its own interpreter reads them (adopt_probe.py); or
    with *answers_of* (a user name) its answers to its pages and JSON API, as that
    user. Run as root, or as site *as_site*'s user (the script goes as text:
    linohost's own files are root's)."""
    text = resources.files("linohost.apply").joinpath("scripts/adopt_probe.py").read_text()
    what = f"the answers of {project.name}" if answers_of else "reading its settings"
    argv = [python, "-I", "-B", "-c", text,
            *(["--answers", answers_of] if answers_of else []), project, *paths]
    try:
        out = ctx.system.run(argv, what=what, cwd=project, timeout=600, as_site=as_site).stdout
    except StepFailed as e:
        out = e.output or str(e)
    for line in reversed(out.splitlines()):
        if line.startswith(PROBE_LINE):
            return json.loads(line[len(PROBE_LINE):])
        if line.startswith(PROBE_ERROR):
            raise UsageError(f"{project}: its settings raise {line[len(PROBE_ERROR):]}")
    tail = out.strip().splitlines()[-1:] or ["no output"]
    raise UsageError(f"{project}: {what} with {python} failed: {tail[0]}")


def plan(ctx, path, as_name=None, env=None, db="copy", python=None, paths=(), layout=None):
    """Every check before anything is made; the :class:`Plan` of the adoption (*layout*:
    the getlino layout it is a site of, if known)."""
    host = ctx.host
    project = Path(path).resolve()
    if not (project / "manage.py").is_file():
        raise UsageError(f"{project} is not a Lino project: it has no manage.py")
    if project == host.root.resolve() or host.root.resolve() in project.parents:
        raise UsageError(f"{project} is already under linohost (inside {host.root})")
    adopted_as = adoptions(host).get(str(project))
    if adopted_as:
        raise AlreadyAdopted(project, adopted_as)
    layout = layout or getlino.layout_of(project)
    busy = getlino.running() if layout else None        # (it writes its sites only)
    if busy:
        raise UsageError(f"getlino is running (pid {busy}): adopt when it is done")
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
    database = Database.of_settings(found, project)
    database.tables(ctx.cfg)                    # readable, or a UsageError
    if db == "move":
        movedb.check(ctx, database)
    admin = database.first_admin(ctx.cfg)
    if not admin:
        raise UsageError(f"{database.describe()}: no active admin user: Lino's commands "
                         f"run by linohost sign in as one (make one, then adopt)")
    app = next((a.name for a in apps.APPS.values()
                if a.settings_module == found["app_module"]), found["app_module"])
    settings_module = apps.resolve(app).settings_module
    name = as_name or project.name
    env, pins, env_notes = choose_env(host, env, settings_module, found["distributions"])
    # (lino.modlib.extjs: where Lino kept ExtJS before lino_extjs)
    fronts = {module: name for name, module in FRONT_ENDS.items()}
    front = {**fronts, "lino.modlib.extjs": "extjs"}.get(found["default_ui"] or "")
    if front is None:
        raise UsageError(f"{project}: its front end {found['default_ui']!r} is not one "
                         f"linohost serves ({', '.join(FRONT_ENDS.values())})")
    title = found["title"] if isinstance(found["title"], str) else None
    record = sites.plan_new(ctx, name, app, env, database.engine, title,
                            found["languages"] or ["en"], "", front, admin=admin,
                            new_env=bool(pins))
    if db == "move":
        record = dataclasses.replace(record, db_name=database.name)
    record = dataclasses.replace(record, plugins=tuple(found["plugins"]))
    own, notes = own_part(found, found["settings_file"], given_settings(ctx.cfg))
    key = found["secret_key"] if ctx.cfg["secret_policy"] != "env" else ""
    media = project / "media"
    kib = sum(p.stat().st_size for p in media.rglob("*") if p.is_file()) // 1024 \
        if media.is_dir() else 0
    supervisor_dir = str(layout.supervisor_dir) if layout else ""
    return Plan(source=str(project), python=str(py), paths=extra,
                settings_file=found["settings_file"], database=database, media_kib=kib,
                site=record, own=own, notes=env_notes + notes, kind=kind, env_pins=pins,
                config=str(layout.config or "") if kind == "getlino" else "", key=key,
                key_note=key_row(ctx.cfg["secret_policy"], found["secret_key"]),
                old_services=oldservices.find(project, supervisor_dir or None),
                supervisor_dir=supervisor_dir, move=db == "move")


def choose_env(host, env, settings_module, source):
    """(environment, pins, notes) for a source with packages *source*: the environment
    named (a note where its Lino packages differ), else the first one with the app and
    every Lino package of the source at its version, else a new one to be built from
    the source's *pins*."""
    if env is not None:
        off = packages.mismatches(source, envs.installed(host.env(env)))
        return env, [], [f"environment {env} has {n} {e or 'not'} where the source has {v}"
                         for n, v, e in off[:3]]
    for name in host.env_names():
        e = host.env(name)
        if sites.module_installed(e, settings_module) and \
                not packages.mismatches(source, envs.installed(e)):
            return name, [], []
    local = packages.local_lino(source)
    if local:
        raise UsageError(f"no environment of this host has the source's Lino packages, and "
                         f"its {local[0]} is a local checkout: make one with `linohost env "
                         f"create`, and name it with --env")
    return packages.env_name_for(source, host.env_names()), packages.pins(source), []


def source_kind(found, layout):
    """getlino (its settings imported the layout's shared settings), seed (the shared
    djangosite_local hook), or project; from what the probe *found*."""
    shared = found.get("shared_settings")
    if layout and shared and Path(shared).resolve() == layout.shared_settings.resolve():
        return "getlino"
    return "seed" if found.get("seed_hook") else "project"


def archive_source(ctx, p):
    """A verified linohost archive of the source (database, media, config, settings)
    in the host's backup directory; return its path."""
    host, site = ctx.host, p.site
    with staged(ctx, site.name, backup_dir(host)) as a:
        db = p.database
        native = f"database/{backend(db.engine, ctx.cfg).dump_name}"
        (a.stage / "database").mkdir()
        ctx.progress(f"{site.name}: copying the database {db.describe()}")
        db.dump(ctx.cfg, a.stage / native)
        copy_files(a.stage / "files", p.settings_file, Path(p.source))
        freeze = ctx.system.run([p.python, "-m", "pip", "freeze", "--all"],
                                what="pip freeze").stdout.splitlines()
        a.seal(site=_record(site), env=site.env, packages=freeze, engine=db.engine,
               native=native, portable=False)
    path = a.path
    ctx.progress(f"{site.name}: archive of the source {path} ({path.stat().st_size // 1024} KiB)")
    return path


def adopt(ctx, p):
    """Carry out the plan *p*: archive, restore as a new site (with the source's
    database itself under --db move), check; return (site, archive path, {table:
    rows}). A failure leaves no site behind, and the source as it was."""
    host, name = ctx.host, p.site.name
    journal = Journal(host, "adopt", name).start()
    try:
        if p.env_pins:          # (undone after the site: recorded before it)
            ctx.progress(f"{name}: building environment {p.site.env} from the source's "
                         f"pip freeze ({len(p.env_pins)} packages)")
            env = envs.create(ctx, p.site.env, p.env_pins)
            journal.record("tree", path=env.path)
        journal.record("adopted_site", site=name, keep_database=p.move)
        # Nothing but its users may write to the source while it is copied (nothing
        # at all to the database --db move takes over): a linod running a task between
        # the source's answers and its archive would change what they are compared with.
        place = adopted_place(host, journal, name)
        oldservices.stop(ctx, journal, name, [s for s in p.old_services if p.stopped_first(s)],
                         place / "files", p.supervisor_dir or None)
        ctx.progress(f"{name}: the source's answers to its pages and JSON API, as "
                     f"{p.site.admin}")
        heard = [probe(ctx, p.python, Path(p.source), p.paths, answers_of=p.site.admin)]
        counts = [p.database.tables(ctx.cfg)]
        path = archive_source(ctx, p)
        if not p.move:
            # A source that goes on serving may change while it is archived: the archive
            # holds what it held before or after (the new site is compared with both).
            ctx.progress(f"{name}: the source's rows and answers again, after its archive")
            counts.append(p.database.tables(ctx.cfg))
            heard.append(probe(ctx, p.python, Path(p.source), p.paths,
                               answers_of=p.site.admin))
        keep_key(ctx, journal, name, p.key)
        if p.move:
            movedb.take_over(ctx, journal, name, p.database, path)
        ctx.progress(f"{name}: making the site from the archive")
        site = restore(ctx, path, as_name=name, title=p.site.title, own=p.own,
                       db_kept=p.database.name if p.move else "", held="adopted")
        ctx.progress(f"{name}: checking its rows")
        same_rows(name, counts, Database.of_site(host, site).tables(ctx.cfg))
        ctx.progress(f"{name}: comparing its answers with the source's ({len(heard[-1])} "
                     f"requests)")
        same_answers(name, heard, probe(ctx, host.env(site.env).bin_python, host.site_dir(name),
                                        [], answers_of=p.site.admin, as_site=name))
        ctx.progress(f"{name}: the same answers as the source's to {len(heard[-1])} requests")
        maintenance.path(host, name).unlink()       # checked: it opens
        remember(place, journal, host, p, path)
        oldservices.stop(ctx, journal, name,
                         [s for s in p.old_services if not p.stopped_first(s)],
                         place / "files", p.supervisor_dir or None)
    except BaseException:
        ctx.progress(f"{name}: adopting failed; removing what was made")
        journal.undo(ctx, log=ctx.progress)
        raise
    journal.commit()
    return site, path, counts[-1]


def adopted_place(host, journal, name):
    """``ROOT/adopted/NAME``, root's only (made, and journaled where it is new): where
    adopt keeps what it took of a source."""
    d = host.adopted_dir / name
    if not d.is_dir():                      # (else: of an earlier site of this name)
        journal.record("tree", path=str(d))
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    host.adopted_dir.chmod(0o700)
    return d


def remember(place, journal, host, p, archive):
    """Write ``adoption.toml`` in the site's adopted *place*: where it came from."""
    journal.record("file", path=str(place / RECORD))
    atomic_write(place / RECORD, tomli_w.dumps({
        "source": p.source, "kind": p.kind, "python": p.python,
        "adopted": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "created": host.site(p.site.name).created, "archive": str(archive)}), mode=0o600)


@dataclass
class Outcome:
    """What became of one source of `adopt --all`."""
    source: str
    site: str
    result: str             # adopted, planned (--dry-run), skipped (adopted before), failed
    message: str = ""
    tables: int = 0
    rows: int = 0
    archive: str = ""

    @property
    def ok(self):
        return self.result != "failed"

    def as_dict(self):
        return {**asdict(self), "ok": self.ok}


def adopt_all(ctx, layout, env=None, db="copy", dry_run=False, on_done=None):
    """Plan and adopt each site of the getlino *layout* in turn, going on past one that
    fails (it is left as it was); the :class:`Outcome` of each."""
    out = []
    for project in layout.sites():
        try:
            p = plan(ctx, project, env=env, db=db, layout=layout)
            if dry_run:
                o = Outcome(str(project), p.site.name, "planned",
                            f"{p.site.app} in {p.site.env}, {p.media_kib} KiB of media")
            else:
                site, archive, rows = adopt(ctx, p)
                o = Outcome(str(project), site.name, "adopted",
                            f"{len(rows)} tables, {sum(rows.values())} rows",
                            len(rows), sum(rows.values()), str(archive))
        except AlreadyAdopted as e:
            o = Outcome(str(project), e.site, "skipped", str(e))
        except LinohostError as e:
            o = Outcome(str(project), project.name, "failed", str(e))
        out.append(o)
        if on_done:
            on_done(o)
    return out


def same_rows(name, counts, after):
    """Raise StepFailed naming the first table whose rows the adopted site does not
    have as many of as the source had ({table: rows}, before and after its archive)."""
    for table in sorted(set(counts[-1]) | set(after)):
        if all(after.get(table) != c.get(table) for c in counts):
            raise StepFailed(f"{name}: adopted rows differ from the source's in {table} "
                             f"({counts[-1].get(table)} before, {after.get(table)} after)")


def same_answers(name, heard, after):
    """Raise StepFailed naming the first request the adopted site answers otherwise
    than the source did ({path: [status, body]}; *heard*: the source's, asked before
    and after its archive: either will do), and where in its body."""
    for path in sorted(set(heard[-1]) | set(after)):
        was, now = heard[-1].get(path), after.get(path)
        if all(now != answers.get(path) for answers in heard):
            how = (f"{now[0]} after, {was[0]} before" if was and now and was[0] != now[0] else
                   "another body: " + first_difference(was[1], now[1]) if was and now else
                   "not before: a table of its own" if now else "not at all")
            raise StepFailed(f"{name}: the adopted site answers GET {path} otherwise than "
                             f"the source ({how})")


def first_difference(was, now, where="body"):
    """Where two JSON values first differ, and how: ``body.rows[2][5] is 'b' after,
    'a' before``."""
    if isinstance(was, dict) and isinstance(now, dict):
        for key in sorted(set(was) | set(now), key=str):
            if was.get(key, _MISSING) != now.get(key, _MISSING):
                return first_difference(was.get(key, _MISSING), now.get(key, _MISSING),
                                        f"{where}.{key}")
    elif isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        for i, (a, b) in enumerate(zip(was, now)):
            if a != b:
                return first_difference(a, b, f"{where}[{i}]")
    elif isinstance(was, list) and isinstance(now, list):
        return f"{where} has {len(now)} items after, {len(was)} before"
    elif isinstance(was, str) and isinstance(now, str):     # from where they part
        i = next((k for k, (a, b) in enumerate(zip(was, now)) if a != b),
                 min(len(was), len(now)))
        if i > 20:
            return (f"{where} from character {i - 10} is {_short(now[i - 10:])} after, "
                    f"{_short(was[i - 10:])} before")
    return f"{where} is {_short(now)} after, {_short(was)} before"


_MISSING = type("Missing", (), {"__repr__": lambda self: "missing"})()


def _short(value, width=60):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def keep_key(ctx, journal, name, key):
    """Store the source's SECRET_KEY as the key of the site to be made (root's,
    0600; the site's own key file is written from it, see keys.site_key)."""
    if not key:
        return
    path = keys.kept_file(ctx.host, name)
    journal.record("file", path=str(path))
    write_secret(path, key)


@undo_step("adopted_site")
def _undo_adopted_site(ctx, site, keep_database=False):
    """Remove a site whose adoption did not finish (made, but not checked); its
    database stays if it is the source's (--db move)."""
    if ctx.host.has_site(site):
        sites.rm(ctx, ctx.host.site(site), keep_database=keep_database)
    elif ctx.host.site_dir(site).exists():
        raise Conflict(f"{ctx.host.site_dir(site)} is left without a registry record")

