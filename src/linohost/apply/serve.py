"""`linohost serve`: all sites behind a front server of the host's own (Apache or
nginx, host key ``web_server``), in the foreground.

The front server's config is rendered from the registry; while it runs, a change
of the registry, an environment or the host config (``linohost new``/``rm`` in
another shell) re-renders it and reloads the front server gracefully. What
differs between the two is in their objects and files (:mod:`.serve_front`).
"""

import errno
import hashlib
import json
import os
import signal
import socket
import time

from ..keeper import control as keeper_control
from .. import processes
from ..errors import LinohostError, StepFailed, UsageError
from ..model import config, tls
from ..render import apache as render_apache
from . import envs, ready, users
from .serve_front import FILES, check_pythons, front_server
from ..fs import atomic_write
from .keeper_process import KeeperProcess


class _Stop(Exception):
    pass


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


def serve(ctx, lock, bind, port, poll=1.0, wait_sites=False, wait_timeout=600):
    """Run the front server (and under the keeper backend the keeper) in the foreground until
    SIGINT/SIGTERM; reload on registry changes.

    Its URL is announced once the landing page answers (and, with *wait_sites*,
    every site's first page)."""
    host = ctx.host
    check_port(bind, port)
    tls.check_serve(ctx.cfg)
    front = front_server(ctx, lock)
    pid = front.running_pid()
    if pid:
        raise UsageError(f"{front.noun} of this host root is already running (pid {pid}): "
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
        check_pythons(ctx, front)
    users.check_all(ctx)
    for d in front.dirs():
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    seen = signature(host)
    write_changed(FILES[front.name](ctx, front, bind, port))
    front.configtest()

    def stop(signum, frame):
        raise _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    proc = None
    try:
        if keeper:
            ctx.progress(f"keeper pid {keeper.start()} holds the sites' sockets "
                         f"(log: {keeper.log})")
        log_start = front.error_log.stat().st_size if front.error_log.exists() else 0
        proc = front.popen()
        wait_bound(front, proc, bind, port, log_start)
        _mark_applied(host, seen, bind, port)
        _announce(ctx, front, proc, bind, port, wait_sites, wait_timeout)
        while True:
            time.sleep(poll)
            if proc.poll() is not None:
                raise front_exited(front, proc, log_start)
            if keeper:
                keeper.check()
            now = signature(host)
            if now != seen:
                seen = now
                if keeper:                   # sockets first, then the routes to them
                    keeper_control.notify(host)
                _reload(ctx, front, proc, bind, port)
                _mark_applied(host, seen, bind, port)
    except _Stop:
        ctx.progress(f"stopping {front.noun}" + (", the keeper" if keeper else "")
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
    """Raise UsageError unless the front server can listen on *bind*:*port* (bound as it
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


def wait_bound(front, proc, bind, port, log_start, timeout=60):
    """Return once *front* accepts connections on the port; raise if it exits first."""
    address = ("127.0.0.1" if bind in ("0.0.0.0", "") else "::1" if bind == "::" else bind, port)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StepFailed(f"{front.noun} did not listen on {bind}:{port} within "
                                 f"{timeout} s" + _log_tail(front, log_start)) from None
            time.sleep(0.1)
    raise front_exited(front, proc, log_start)


def front_exited(front, proc, log_start):
    """The error for a front server that exited: with the tail of what it logged."""
    return StepFailed(f"{front.noun} exited with code {proc.returncode}"
                      + (_log_tail(front, log_start) or " (its messages are above)"))


def _log_tail(front, start, lines=3):
    """": LAST LINES (in FILE)" of what *front*'s error log got since *start*, or ""."""
    error_log = front.error_log
    try:
        with open(error_log, "rb") as f:
            f.seek(start)
            new = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    if not new:
        return ""
    tail = [front.log_message(ln) for ln in new[-lines:]]
    return f": {' / '.join(tail)} (in {error_log})"


def _reload(ctx, front, proc, bind, port):
    """Re-render the config; if it changed, reload *front* gracefully and return once
    it serves the new one."""
    try:
        ctx.host.cfg = config.load(ctx.host.config_path)
        if not write_changed(FILES[front.name](ctx, front, bind, port)):
            return
        front.configtest()
    except LinohostError as e:
        ctx.progress(f"not reloading: {e}")
        return
    ctx.progress(f"sites changed: reloading {front.noun} ({len(ctx.host.site_names())} sites)")
    front.reload(proc)


def _terminate(proc, timeout=20):
    """Stop the front server; its children (workers, site daemons) go with it, or are
    killed."""
    processes.end(proc, timeout)
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
