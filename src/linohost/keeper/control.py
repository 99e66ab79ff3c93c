"""Talking to a running keeper over its control socket (one JSON line each way)."""

import json
import socket

from . import paths


class NotRunning(Exception):
    pass


def call(host, cmd, timeout=30, **args):
    """Send *cmd* to the keeper of *host*; return its reply, or raise NotRunning."""
    path = paths.control_socket(host)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            line = s.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(str(path)) from None
    if not line:
        raise NotRunning(str(path))
    return json.loads(line)


def running(host):
    """Whether a keeper answers for *host*."""
    try:
        call(host, "status", timeout=5)
        return True
    except (NotRunning, OSError):
        return False


def notify(host):
    """Tell a running keeper that the registry changed (nothing if none runs)."""
    try:
        call(host, "reload")
    except (NotRunning, OSError):
        pass


def jobs_changed(host, site):
    """Tell a running keeper that *site*'s background tasks may have changed (a
    command ran in it): it wakes the site soon to learn when its next one is due."""
    try:
        call(host, "jobs", site=site)
    except (NotRunning, OSError):
        pass


class NotWarm(Exception):
    """The keeper cannot start this command warm (no ready zygote, or the site differs
    from its group): run it plainly."""


def run_warm(host, request, stdio, on_pid=lambda pid: None):
    """Run a site's command in a process forked from its group's zygote by the keeper of
    *host*, with *stdio* (three descriptors) as its stdin, stdout and stderr; return its
    exit code. Raise NotRunning or NotWarm when it must run plainly instead (then
    nothing of it ran). Ctrl-C is passed on to it, and once it has ended, this
    process is interrupted too (KeyboardInterrupt), as a plain child's caller is."""
    import os
    import signal
    path = paths.control_socket(host)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(str(path)) from None
        socket.send_fds(s, [json.dumps({"cmd": "exec", **request}).encode() + b"\n"],
                        list(stdio))
        answers = s.makefile("rb")
        first = json.loads(answers.readline() or b"{}")
        if not first.get("ok"):
            raise NotWarm(first.get("error", "the keeper refused"))
        pid = first["pid"]
        on_pid(pid)
        interrupted = False
        while True:
            try:
                line = answers.readline()
                break
            except KeyboardInterrupt:
                interrupted = True
                try:
                    os.kill(pid, signal.SIGINT)   # as the terminal would have
                except ProcessLookupError:
                    pass
        last = json.loads(line or b"{}")
    finally:
        s.close()
    if interrupted:
        raise KeyboardInterrupt
    if "inexact" in last:
        raise NotWarm(last["inexact"])
    if "exit" not in last:
        raise OSError("the keeper stopped during the command")
    return last["exit"]
