"""Warm commands: a site's manage.py (or linohost's site script) forked from the
zygote of its group when a keeper runs, plainly otherwise; the same output and
exit code either way.
"""

import os
import subprocess
import threading

from ..keeper import control
from ..keeper.zygotes import group_of
from .system import step_failed


def _request(ctx, site, argv, script=None):
    return {"site": site.name, "project": str(ctx.host.site_dir(site.name)),
            "group": list(group_of(ctx.host, site)), "argv": [str(a) for a in argv],
            "script": script, "environ": dict(os.environ)}


def _warm_possible(ctx):
    return ctx.cfg["process_backend"] == "keeper" and ctx.cfg["keeper.zygotes"]


def run_terminal(ctx, site, argv):
    """``manage.py ARGV`` of *site* with this process's stdin, stdout and stderr; its
    exit code, or None when it cannot start warm (nothing of it ran then)."""
    if not _warm_possible(ctx):
        return None
    try:
        return control.run_warm(ctx.host, _request(ctx, site, argv), (0, 1, 2))
    except (control.NotRunning, control.NotWarm):
        return None


def run_logged(ctx, site, argv, log_path):
    """``manage.py ARGV`` of *site*, its output into *log_path*; its exit code, or None
    when it cannot start warm."""
    if not _warm_possible(ctx):
        return None
    with open(os.devnull, "rb") as null, open(log_path, "w", encoding="utf-8") as log:
        try:
            return control.run_warm(ctx.host, _request(ctx, site, argv),
                                    (null.fileno(), log.fileno(), log.fileno()))
        except (control.NotRunning, control.NotWarm):
            return None


def run_captured(ctx, site, argv, *, script=None, what=None):
    """Like System.run (output captured, StepFailed with its tail on failure): a
    CompletedProcess, or None when it cannot start warm."""
    if not _warm_possible(ctx):
        return None
    with open(os.devnull, "rb") as null:
        r, w = os.pipe()
        chunks = []
        reader = threading.Thread(target=lambda: chunks.append(_read_all(r)), daemon=True)
        reader.start()
        try:
            code = control.run_warm(ctx.host, _request(ctx, site, argv, script),
                                    (null.fileno(), w, w))
        except (control.NotRunning, control.NotWarm):
            return None
        finally:
            os.close(w)
            reader.join()
            os.close(r)
    text = b"".join(chunks).decode("utf-8", "replace")
    if code != 0:
        raise step_failed(what or argv[0], text, code)
    return subprocess.CompletedProcess(argv, code, text, None)


def _read_all(fd):
    parts = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


def run_manage(ctx, site, args, what=None, env=None):
    """``manage.py ARGS`` of *site* as its user, output captured (System.run): warm
    when a keeper can fork it, plainly otherwise (always with another *env* than the
    site's own: no zygote has that code for it)."""
    if env is None or env.name == site.env:
        done = run_captured(ctx, site, args, what=what)
        if done is not None:
            return done
    env = env or ctx.host.env(site.env)
    project = ctx.host.site_dir(site.name)
    return ctx.system.run([env.bin_python, project / "manage.py", *args], as_site=site.name,
                          cwd=project, what=what)
