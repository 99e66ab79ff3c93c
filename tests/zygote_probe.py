"""Probe one site twice: in a worker forked from its group's zygote and in a worker
started plainly, as the keeper starts them (tests/test_zygote.py compares the two).

Usage (as root, linohost's Python): zygote_probe.py ROOT SITE SPEC_JSON
SPEC: {"requests": [[method, path, form], ...], "host": "...", "fork_out": path,
"plain_out": path, "forked_cache": where the site cache the forked worker built goes}.
A site whose data differ from its group's demo data (the forked worker says so) is
forked again from a zygote of its own data variant, as the keeper does. Prints a JSON
object: exit codes and status lines of both.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from linohost.apply.system import System
from linohost.keeper import protocol, shipped
from linohost.keeper.zygotes import ForkedWorker, Zygote, group_of, set_child_subreaper
from linohost.model.host import Host

#: What the workers run instead of serving (keeper/worker.py's run_probe).
PROBE_SOURCE = (Path(__file__).parent / "worker_probe.py").read_text()


def main():
    root, name, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # One hash seed for both workers: Lino writes some sets into its site cache in
    # the order Python iterates them, which two plain starts do not share either.
    os.environ["PYTHONHASHSEED"] = "0"
    host = Host.open(root)
    site = host.site(name)
    system = System(host.cfg, host.root / "home")
    owner = system.owner_of(name)
    set_child_subreaper()                     # the forked worker becomes our child
    report = {}
    tag = f"_probe{os.getpid()}"            # not the keeper's, nor another probe's
    z = Zygote(host, group_of(host, site), site, tag=tag)
    z.start()
    try:
        z.sock.setblocking(True)
        z.sock.settimeout(600)
        z.readable()
        report["zygote"] = z.state
        report["zygote_threads"] = len(os.listdir(f"/proc/{z.proc.pid}/task"))
        report["zygote_fds"] = fds(z.proc.pid)
        if z.state == "ready":
            request = {**start(host, name, spec["fork_out"], spec),
                       "uid": owner[0] if owner else None, "gid": owner[1] if owner else None,
                       "environ": system.site_environ(name)}
            report["fork"] = run(host, name, lambda fds: ForkedWorker(z.fork(request, fds)))
            variant = [line.split(" ", 2) for line in report["fork"]["status"]
                       if line.startswith("variant ")]
            if report["fork"]["code"] == protocol.INEXACT and variant:
                # Its data differ from the demo's: as the keeper would, a zygote of the
                # data it reported; the worker forked from that one is what is compared.
                report["variant"] = variant[0][1]
                report["demo_fork"] = report["fork"]
                z.stop()
                z.remove_files()
                z = Zygote(host, group_of(host, site), site, tag=tag,
                           variant=(variant[0][1], json.loads(variant[0][2])))
                z.start()
                z.sock.setblocking(True)
                z.sock.settimeout(600)
                z.readable()
                report["zygote"] = z.state
                report["fork"] = run(host, name,
                                     lambda fds: ForkedWorker(z.fork(request, fds)))
            if spec.get("fork_again"):               # a second worker of the same zygote
                again = {**request, "probe": {**request["probe"], "out": spec["fork_again"]}}
                report["fork_again"] = run(host, name,
                                           lambda fds: ForkedWorker(z.fork(again, fds)))
            cache = host.site_dir(name) / "media" / "cache"
            if spec.get("forked_cache") and cache.exists():
                cache.rename(spec["forked_cache"])     # the plain worker builds its own
    finally:
        z.stop()
        z.remove_files()
    env = host.env(site.env)
    project = host.site_dir(name)

    def plain(fds):
        listen_fd, status_w, log_fd = fds
        return subprocess.Popen(
            shipped.argv(env.bin_python, "worker", project), cwd=project,
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, pass_fds=fds,
            **system.site_process_kwargs(name, {
                **shipped.environ(), "LINOHOST_LISTEN_FD": str(listen_fd),
                "LINOHOST_STATUS_FD": str(status_w),
                protocol.START: json.dumps(start(host, name, spec["plain_out"], spec))}))
    report["plain"] = run(host, name, plain)
    print(json.dumps(report))


def start(host, name, out, spec):
    """A worker's start request (keeper/protocol.py) that probes instead of serving."""
    return {"site": name, "project": str(host.site_dir(name)), "keeper_pid": os.getpid(),
            "threads": 4, "idle_timeout": 0, "grace": 5, "jobs": None,
            "probe": {"out": out, "requests": spec["requests"], "host": spec["host"],
                      "build_cache": True, "source": PROBE_SOURCE}}


def fds(pid):
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[name] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out


def run(host, name, start):
    """Start a probe worker with *start(fds)*; its exit code, status lines, seconds."""
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    status_r, status_w = os.pipe()
    (host.logs_dir / "sites").mkdir(parents=True, exist_ok=True)
    log = open(host.logs_dir / "sites" / f"{name}.log", "ab")
    t0 = time.monotonic()
    try:
        proc = start([listen.fileno(), status_w, log.fileno()])
    finally:
        os.close(status_w)
        log.close()
        listen.close()
    code = proc.wait(600)
    with os.fdopen(status_r) as f:
        lines = f.read().splitlines()
    return {"code": code, "status": lines, "seconds": round(time.monotonic() - t0, 3)}


if __name__ == "__main__":
    main()
