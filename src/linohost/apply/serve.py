"""`linohost serve`: all sites behind an Apache of the host's own, in the foreground.

The vhosts are rendered from the registry; while Apache runs, a change of the
registry, an environment or the host config (``linohost new``/``rm`` in
another shell) re-renders them and reloads Apache gracefully.
"""

import errno
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time

from ..backends.process import process_backend
from ..keeper import control as keeper_control
from ..backends.web import serve_apache, serve_modules
from ..backends.web.base import python_version, readable_by_all
from ..errors import LinohostError, StepFailed, UsageError
from ..model import config, tls
from ..render import apache as render_apache
from . import envs, ready, users
from ..fs import atomic_write
from .keeper_process import KeeperProcess


class _Stop(Exception):
    pass


def site_user(ctx):
    """(user, group) of Apache's own processes when it starts as root, else (None, None)."""
    if ctx.system.is_root:
        return ctx.cfg["site_user"], ctx.cfg["site_group"]
    return None, None


def embedded_files(ctx, apache, bind, port):
    """{path: text} of the served Apache's config, vhosts and landing page."""
    host, cfg = ctx.host, ctx.cfg
    user, group = site_user(ctx)
    backend = process_backend(host, user=user, group=group, run_as=users.run_as(ctx))
    mounts = render_apache.mounts(host, port, local_aliases=True)
    listen = render_apache.Listen(f"*:{port}", cfg["server_name"], tls.scheme(cfg))
    return {
        apache.sites_conf: render_apache.sites_conf(
            mounts, listen, backend, apache.htdocs, cfg["apache.extra_directives"],
            serve_tls(cfg, mounts, listen, port)),
        apache.htdocs / "index.html": render_apache.index_html(mounts, cfg["server_name"]),
        apache.conf: render_apache.embedded_conf(
            server_root=apache.server_root, listen=f"{bind}:{port}", run_dir=apache.run_dir,
            logs_dir=host.logs_dir, user=user, group=group,
            module_lines=apache.module_lines(modules(ctx, backend)), sites_conf_path=apache.sites_conf,
            mime_types=apache.mime_types),
    }


def serve_tls(cfg, mounts, listen, port):
    """HTTPS on serve's one port (files mode; ACME needs the system Apache's mod_md,
    so under acme serve tries tls.cert_file/key_file), plain HTTP redirected to it."""
    if not tls.enabled(cfg):
        return None
    names = render_apache.vhost_names(mounts, listen)
    files = cfg.replace(tls__mode="files")
    return render_apache.tls_of(files, names, tls.certificates(files, names), port,
                                plain_http_redirect=True)


def modules(ctx, backend):
    """Debian names of the Apache modules `serve` loads: the base ones, the process
    backend's, and HTTPS's (mod_md runs only in the system Apache)."""
    return (*serve_modules(backend),
            *(m for m in tls.apache_modules(ctx.cfg) if m != "md"))


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


def _applied_path(host):
    return host.run_dir / "serve-applied.json"


def _digest(sig):
    return hashlib.sha256(repr(sig).encode()).hexdigest()


def _mark_applied(host, sig, bind, port):
    """Note that Apache now serves what *sig* describes on *bind*:*port* (for
    :func:`wait_applied` and :func:`running`)."""
    atomic_write(_applied_path(host), json.dumps({"pid": os.getpid(), "signature": _digest(sig),
                                                  "bind": bind, "port": port}))


def running(host):
    """The running `linohost serve` of *host* as ``{"pid", "bind", "port"}``, or None."""
    try:
        applied = json.loads(_applied_path(host).read_text())
        os.kill(applied["pid"], 0)
        return {"pid": applied["pid"], "bind": applied["bind"], "port": applied["port"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def what_serves(host):
    """What serves the sites of *host* now, in words; None if nothing does. Under
    the keeper backend that is a keeper (of `linohost serve`, or the boot-time one
    behind the system Apache); under mod_wsgi a `linohost serve`, or the system
    Apache with this host's config."""
    from . import system_apache
    serve = running(host)
    if serve:
        return f"`linohost serve` (pid {serve['pid']}, port {serve['port']})"
    if host.cfg["process_backend"] == "keeper":
        return "the keeper" if keeper_control.running(host) else None
    return "the system Apache" if system_apache.serves(host.cfg) else None


def serving_port(host):
    """The port the sites answer on here: the running `linohost serve`'s, else the
    configured `apache.port`."""
    serve = running(host)
    return serve["port"] if serve else host.cfg["apache.port"]


def wait_applied(host, timeout=30, every=0.1):
    """Return once a running `linohost serve` of *host* serves the registry as it is
    now (a command that added or removed a site says "ready" only when it is so);
    False if it has not within *timeout* seconds, True otherwise (or if none runs)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            applied = json.loads(_applied_path(host).read_text())
            os.kill(applied["pid"], 0)
        except (OSError, ValueError, KeyError, TypeError):
            return True                     # no serve runs (or it is just stopping)
        if applied["signature"] == _digest(signature(host)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(every)


def check_pythons(ctx, apache):
    """Every environment must run under this mod_wsgi's Python, readable by the site user
    (when the process backend runs the sites in mod_wsgi)."""
    if "wsgi" not in process_backend(ctx.host).apache_modules:
        return
    want = apache.python_version()
    for env in ctx.host.envs():
        got = python_version(env.bin_python)
        if got != want:
            raise UsageError(
                f"environment {env.name} uses Python {got} but mod_wsgi runs {want}: "
                f"recreate it with the host's python ({ctx.cfg['python']})")
        if ctx.system.is_root and not readable_by_all(env.bin_python):
            raise UsageError(f"the site user cannot read {env.bin_python}: "
                             f"use a Python outside root's home (host config key `python`)")


def ensure_installed(ctx, apache, lock):
    if not apache.installed():
        with lock:
            if not apache.installed():
                apache.install(ctx.system, ctx.progress)


def serve(ctx, lock, bind, port, poll=1.0, wait_sites=False, wait_timeout=600):
    """Run Apache (and under the keeper backend the keeper) in the foreground until
    SIGINT/SIGTERM; reload on registry changes.

    Its URL is announced once the landing page answers (and, with *wait_sites*,
    every site's first page)."""
    host = ctx.host
    check_port(bind, port)
    tls.check_serve(ctx.cfg)
    apache = serve_apache(host, modules(ctx, process_backend(host)), ctx.cfg["apache.server"])
    ensure_installed(ctx, apache, lock)
    pid = apache.running_pid()
    if pid:
        raise UsageError(f"Apache of this host root is already running (pid {pid}): "
                         f"stop that `linohost serve` first")
    keeper = None
    if ctx.cfg["process_backend"] == "keeper":
        if keeper_control.running(host):
            raise UsageError(f"a keeper already runs for {host.root}: stop it first "
                             f"(`linohost serve` starts its own)")
        with lock:
            for env in host.envs():
                envs.ensure_worker_server(ctx, env)
        keeper = KeeperProcess(host, ctx.progress)
    else:
        check_pythons(ctx, apache)
    users.check_all(ctx)
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
        if keeper:
            ctx.progress(f"keeper pid {keeper.start()} holds the sites' sockets "
                         f"(log: {keeper.log})")
        error_log = host.logs_dir / "apache-error.log"
        log_start = error_log.stat().st_size if error_log.exists() else 0
        proc = apache.popen()
        wait_bound(proc, bind, port, error_log, log_start)
        _mark_applied(host, seen, bind, port)
        _announce(ctx, apache, proc, bind, port, wait_sites, wait_timeout)
        while True:
            time.sleep(poll)
            if proc.poll() is not None:
                raise apache_exited(proc, error_log, log_start)
            if keeper:
                keeper.check()
            now = signature(host)
            if now != seen:
                seen = now
                if keeper:                   # sockets first, then the routes to them
                    keeper_control.notify(host)
                _reload(ctx, apache, proc, bind, port, error_log)
                _mark_applied(host, seen, bind, port)
    except _Stop:
        ctx.progress("stopping Apache" + (", the keeper" if keeper else "")
                     + " and the site processes")
    finally:
        for s in old:                        # a second Ctrl-C must not cut the cleanup short
            signal.signal(s, signal.SIG_IGN)
        _applied_path(host).unlink(missing_ok=True)
        if proc is not None:
            _terminate(proc)
        if keeper:
            keeper.stop()
        for s, h in old.items():
            signal.signal(s, h)


def check_port(bind, port):
    """Raise UsageError unless Apache can listen on *bind*:*port* (bound as it
    binds, with SO_REUSEADDR: a port in TIME_WAIT is free, a listening one not)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except PermissionError:
            raise UsageError(f"port {port} needs root to listen on: choose one above 1023 with "
                             f"`linohost serve --port N` (or set apache.port: "
                             f"`linohost init --port N`)") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {bind} is in use: choose "
                                 f"another with `linohost serve --port N` (or set apache.port: "
                                 f"`linohost init --port N`)") from None
            raise UsageError(f"cannot listen on {bind}:{port}: {e.strerror}") from None


def wait_bound(proc, bind, port, error_log, log_start, timeout=60):
    """Return once Apache accepts connections on the port; raise if it exits first."""
    address = ("127.0.0.1" if bind in ("0.0.0.0", "") else "::1" if bind == "::" else bind, port)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StepFailed(f"Apache did not listen on {bind}:{port} within {timeout} s"
                                 + _log_tail(error_log, log_start)) from None
            time.sleep(0.1)
    raise apache_exited(proc, error_log, log_start)


def apache_exited(proc, error_log, log_start):
    """The error for an Apache that exited: with the tail of what it logged, if anything."""
    return StepFailed(f"Apache exited with code {proc.returncode}"
                      + (_log_tail(error_log, log_start) or " (its messages are above)"))


def _log_tail(error_log, start, lines=3):
    """": LAST LINES (in FILE)" of what *error_log* got since *start*, or ""."""
    try:
        with open(error_log, "rb") as f:
            f.seek(start)
            new = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    if not new:
        return ""
    # without Apache's "[time] [module:level] [pid N:tid N] " heads
    tail = [re.sub(r"^(\[[^]]*\] *)+", "", ln.strip()) for ln in new[-lines:]]
    return f": {' / '.join(tail)} (in {error_log})"


def _reload(ctx, apache, proc, bind, port, error_log, timeout=20):
    """Re-render the config; if it changed, restart Apache gracefully and return once
    it says it serves the new one."""
    try:
        ctx.host.cfg = config.load(ctx.host.config_path)
        if not write_changed(embedded_files(ctx, apache, bind, port)):
            return
        apache.configtest()
    except LinohostError as e:
        ctx.progress(f"not reloading: {e}")
        return
    ctx.progress(f"sites changed: reloading Apache ({len(ctx.host.site_names())} sites)")
    start = error_log.stat().st_size if error_log.exists() else 0
    os.kill(proc.pid, signal.SIGUSR1)       # graceful restart
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with open(error_log, "rb") as f:
            f.seek(start)
            if b"resuming normal operations" in f.read():
                return
        time.sleep(0.05)


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


def _announce(ctx, apache, proc, bind, port, wait_sites, timeout):
    """Say where to look once the landing page (and with *wait_sites* each site) answers."""
    host = ctx.host
    base = f"{tls.scheme(ctx.cfg)}://{_shown(bind)}:{port}/"
    urls = [base]
    if wait_sites:
        ctx.progress(f"{apache.label} started (pid {proc.pid}); starting every site")
        urls += [m.url for m in render_apache.mounts(host, port, local_aliases=True)]
    address = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    late = ready.wait_answering(urls, address, port, lambda: proc.poll() is None, timeout)
    if proc.poll() is not None:
        return                              # the serve loop reports it
    n = len(host.site_names())
    server = ctx.cfg["server_name"]
    if server != "localhost":               # a name this machine may not resolve
        base += f", public name http://{server}:{port}/"
    where = f"({apache.label}, pid {proc.pid}; logs in {host.logs_dir}); Ctrl-C stops"
    if late:
        ctx.progress(f"serving {n} sites at {base} {where}; not answering after {timeout} s: "
                     f"{' '.join(late)}")
    elif wait_sites:
        ctx.progress(f"open {base} : all {n} sites answer {where}")
    else:
        ctx.progress(f"serving {n} sites at {base} {where}")


def _shown(bind):
    return "localhost" if bind in ("127.0.0.1", "0.0.0.0", "") else bind
