"""The services an adopted project had before linohost: its supervisor programs (getlino's
``linod_PRJ.conf``, ``PRJ-uwsgi.conf``, ``PRJ-asgi.conf``), its vhost in Apache's or
nginx's ``sites-enabled``, its cron job (``make_snapshot_PRJ``) and logrotate file.

A file is the project's when it names the project directory (as a whole path: ``…/prj1``
is not ``…/prj10``). Its background services (a linod, a cron job: they write to the
database while nothing else does) are stopped before the source is copied; those that
serve it (a vhost, a uwsgi or daphne program) go on serving until the adopted site is
made and checked (under ``--db move``: before, too). To stop one, its file moves into
``ROOT/adopted/SITE/files/`` under its own path (a vhost's link only, as ``a2dissite``
does: the file in ``sites-available`` stays) and each service that read one reloads
(supervisor stops the programs whose sections are gone; Apache and nginx reload
gracefully, a running service only). Journaled: if a later step fails, every file
goes back and the services reload again.
"""

import configparser
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import StepFailed
from . import system_apache, system_nginx
from .journal import undo_step

SUPERVISOR_DIR = Path("/etc/supervisor/conf.d")
#: Where a cron job or a logrotate file of a project would be (under /etc).
ETC_DIRS = {"cron": ("cron.daily", "cron.d", "cron.hourly", "cron.weekly"),
            "logrotate": ("logrotate.d",)}
#: A supervisor program runs a web server (it serves the site) when its command names one.
SERVERS = re.compile(r"\b(uwsgi|daphne|gunicorn|uvicorn|hypercorn|runserver|[aw]sgi)\b")


@dataclass(frozen=True)
class OldService:
    kind: str               # supervisor, apache, nginx, cron, logrotate
    path: str               # the file (a vhost: its link in sites-enabled)
    programs: tuple = ()    # the supervisor programs it defines
    background: bool = False    # it serves no request (a linod, a cron job)

    def describe(self):
        what = f" ({', '.join(self.programs)})" if self.programs else ""
        return f"{self.kind}: {self.path}{what}"


def names_project(text, project):
    """Whether *text* names the directory *project* (or a path inside it)."""
    return re.search(re.escape(str(project)) + r"(?![\w.-])", text) is not None


def _programs(path):
    """(the programs of supervisor's file *path*, whether none of them serves)."""
    cp = configparser.RawConfigParser(strict=False)
    try:
        cp.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return (), False
    programs = {}                           # name: whether it serves
    for section in cp.sections():
        kind, _, name = section.partition(":")
        if kind in ("program", "fcgi-program") and name:
            programs[name] = kind == "fcgi-program" or \
                SERVERS.search(cp.get(section, "command", fallback="")) is not None
    return tuple(programs), not any(programs.values())


def _files(d):
    try:
        return sorted(p for p in Path(d).iterdir() if p.is_file())
    except OSError:
        return []


def _reads(path):
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def find(project, supervisor_dir=None, etc=Path("/etc")):
    """The old services of *project*: [OldService], in the order they are stopped."""
    project = Path(project)
    out = []
    for p in _files(supervisor_dir or SUPERVISOR_DIR):
        if p.suffix == ".conf" and names_project(_reads(p), project):
            out.append(OldService("supervisor", str(p), *_programs(p)))
    for kind, confdir in (("apache", system_apache.CONFDIR), ("nginx", system_nginx.CONFDIR)):
        for p in _files(Path(confdir) / "sites-enabled"):
            if names_project(_reads(p), project):
                out.append(OldService(kind, str(p)))
    for kind, dirs in ETC_DIRS.items():
        for d in dirs:
            for p in _files(etc / d):
                if names_project(_reads(p), project):
                    out.append(OldService(kind, str(p), background=True))
    return out


def supervisor_conf(supervisor_dir):
    """supervisord's own config beside its programs' directory (Debian's layout), or
    None: supervisorctl then looks where it always does."""
    conf = Path(supervisor_dir or SUPERVISOR_DIR).parent / "supervisord.conf"
    return str(conf) if conf.is_file() else None


def stop(ctx, journal, site, services, keep, supervisor_dir=None):
    """Stop the old *services* of the source of the adopted *site*, their files kept
    in directory *keep* (see the module)."""
    if not services:
        return
    kinds = sorted({s.kind for s in services})
    conf = supervisor_conf(supervisor_dir)
    journal.record("old_services_reload", kinds=kinds, conf=conf)
    for s in services:
        kept = keep / s.path.lstrip("/")
        kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        journal.record("old_service_file", kept=str(kept), original=s.path)
        shutil.move(s.path, kept)
        ctx.progress(f"{site}: the old {s.describe()} is kept in {kept}")
    reload(ctx, kinds, conf)


def reload(ctx, kinds, conf):
    """Have each service of *kinds* read its files again (where it runs)."""
    if "supervisor" in kinds:
        ctl = shutil.which("supervisorctl")
        args = [ctl, *(["-c", conf] if conf else [])] if ctl else None
        if args and subprocess.run([*args, "pid"], capture_output=True).returncode == 0:
            ctx.system.run([*args, "update"], what="supervisorctl update")
            ctx.progress("supervisor updated: the old programs are stopped")
        else:
            ctx.progress("supervisor is not running: the old programs will not start again")
    if "apache" in kinds:
        system_apache.graceful(ctx)
    if "nginx" in kinds:
        system_nginx.reload(ctx)


@undo_step("old_service_file")
def _undo_old_service_file(ctx, kept, original):
    """Put a moved file back where it was."""
    if os.path.lexists(kept) and not os.path.lexists(original):
        shutil.move(kept, original)


@undo_step("old_services_reload")
def _undo_old_services_reload(ctx, kinds, conf):
    """(Recorded before the files moved; undone after they are back.) A service that
    cannot reload now (what failed the step) still has its files back: said, not
    raised, so that the rest is undone and the repair ends."""
    try:
        reload(ctx, kinds, conf)
    except StepFailed as e:
        ctx.progress(f"{e}: its old files are back; reload it when it is mended")
