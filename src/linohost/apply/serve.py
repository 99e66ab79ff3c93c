"""`linohost serve`: all sites behind the embedded Apache, in the foreground.

The vhosts are rendered from the registry; while Apache runs, a change of the
registry, an environment or the host config (``linohost new``/``rm`` in
another shell) re-renders them and reloads Apache gracefully.
"""

import os
import signal
import subprocess
import time

from ..backends.process import process_backend
from ..backends.web.embedded import EmbeddedApache, python_version, readable_by_all
from ..errors import LinohostError, StepFailed, UsageError
from ..model import config
from ..render import apache as render_apache
from .files import atomic_write


class _Stop(Exception):
    pass


def site_user(ctx):
    """(user, group) that site processes run as when Apache starts as root, else (None, None)."""
    if ctx.system.site_owner:
        return ctx.cfg["site_user"], ctx.cfg["site_group"]
    return None, None


def embedded_files(ctx, apache, bind, port):
    """{path: text} of the embedded Apache's config, vhosts and landing page."""
    host, cfg = ctx.host, ctx.cfg
    user, group = site_user(ctx)
    backend = process_backend(cfg, user=user, group=group)
    mounts = render_apache.mounts(host, port, local_aliases=True)
    listen = render_apache.Listen(f"*:{port}", cfg["server_name"])
    return {
        apache.sites_conf: render_apache.sites_conf(
            mounts, listen, backend, apache.htdocs, cfg["apache.extra_directives"]),
        apache.htdocs / "index.html": render_apache.index_html(mounts, cfg["server_name"]),
        apache.conf: render_apache.embedded_conf(
            server_root=apache.httpd_root, listen=f"{bind}:{port}", run_dir=apache.run_dir,
            logs_dir=host.logs_dir, user=user, group=group,
            module_lines=apache.module_lines(), sites_conf_path=apache.sites_conf,
            mime_types=apache.mime_types),
    }


def write_changed(files):
    """Write the files whose text changed; return whether any did."""
    changed = False
    for path, text in files.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write(path, text)
            changed = True
    return changed


def signature(host):
    """What the rendered config depends on: registry, environments, host config."""
    paths = [host.config_path, *host.registry_dir.glob("*.toml"),
             *host.envs_dir.glob("*/linohost-env.toml")]
    out = []
    for p in sorted(paths):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def check_pythons(ctx, apache):
    """Every environment must run under this mod_wsgi's Python, readable by the site user."""
    want = apache.python_version()
    for env in ctx.host.envs():
        got = python_version(env.bin_python)
        if got != want:
            raise UsageError(
                f"environment {env.name} uses Python {got} but mod_wsgi runs {want}: "
                f"recreate it with the host's python ({ctx.cfg['python']})")
        if ctx.system.site_owner and not readable_by_all(env.bin_python):
            raise UsageError(f"the site user cannot read {env.bin_python}: "
                             f"use a Python outside root's home (host config key `python`)")


def ensure_installed(ctx, apache, lock):
    if not apache.installed():
        with lock:
            if not apache.installed():
                apache.install(ctx.system, ctx.progress)


def serve(ctx, lock, bind, port, poll=1.0):
    """Run Apache in the foreground until SIGINT/SIGTERM; reload on registry changes."""
    host = ctx.host
    apache = EmbeddedApache(host)
    ensure_installed(ctx, apache, lock)
    pid = apache.running_pid()
    if pid:
        raise UsageError(f"Apache of this host root is already running (pid {pid}): "
                         f"stop that `linohost serve` first")
    check_pythons(ctx, apache)
    for d in (apache.run_dir, apache.htdocs):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    seen = signature(host)
    write_changed(embedded_files(ctx, apache, bind, port))
    apache.configtest()

    def stop(signum, frame):
        raise _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        proc = apache.popen()
        ctx.progress(f"serving {len(host.site_names())} sites at http://{_shown(bind)}:{port}/ "
                     f"(Apache pid {proc.pid}; logs in {host.logs_dir}); Ctrl-C stops")
        while True:
            time.sleep(poll)
            if proc.poll() is not None:
                raise StepFailed(f"Apache exited with code {proc.returncode}: "
                                 f"see {host.logs_dir / 'apache-error.log'}")
            now = signature(host)
            if now != seen:
                seen = now
                _reload(ctx, apache, proc, bind, port)
    except _Stop:
        ctx.progress("stopping Apache and the site processes")
    finally:
        for s in old:                        # a second Ctrl-C must not cut the cleanup short
            signal.signal(s, signal.SIG_IGN)
        if proc is not None:
            _terminate(proc)
        for s, h in old.items():
            signal.signal(s, h)


def _reload(ctx, apache, proc, bind, port):
    try:
        ctx.host.cfg = config.load(ctx.host.config_path)
        if not write_changed(embedded_files(ctx, apache, bind, port)):
            return
        apache.configtest()
    except LinohostError as e:
        ctx.progress(f"not reloading: {e}")
        return
    ctx.progress(f"sites changed: reloading Apache ({len(ctx.host.site_names())} sites)")
    os.kill(proc.pid, signal.SIGUSR1)       # graceful restart


def _terminate(proc, timeout=20):
    """Stop httpd; its children (workers, site daemons) go with it, or are killed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:                                     # anything left in httpd's session is ours
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _shown(bind):
    return "localhost" if bind in ("127.0.0.1", "0.0.0.0", "") else bind
