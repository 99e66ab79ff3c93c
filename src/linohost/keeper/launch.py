"""How the keeper starts a site's worker: forked from its group's zygote when one is
ready, else plainly in the site's environment (:mod:`.worker`); as the site's user,
with the site's socket, a status pipe and its log, placed in its fence."""

import json
import logging
import os
import subprocess

from ..errors import UsageError
from . import protocol, shipped
from .fence import Limits
from .zygotes import ForkedWorker, ZygoteError, group_of

log = logging.getLogger("linohost.keeper")


class Launcher:
    """Starts the keeper's workers."""

    def __init__(self, keeper):
        self.keeper = keeper

    def request(self, slot, for_jobs):
        """The start request of a worker for *slot* (see protocol.py)."""
        k = self.keeper
        return {"site": slot.name, "project": str(k.host.site_dir(slot.name)),
                "keeper_pid": os.getpid(), "threads": k.threads,
                "idle_timeout": k.idle_timeout, "grace": k.grace,
                "jobs": {"for_jobs": for_jobs, "min_interval": k.min_job_interval}
                if k.jobs and not k.host.under_maintenance(slot.name) else None}

    def launch(self, slot, for_jobs):
        """Start *slot*'s worker (``slot.proc``, ``slot.start_mode``); return the
        reading end of its status pipe. Raises when it cannot start."""
        k = self.keeper
        site = k.host.site(slot.name)
        env = k.host.env(site.env)
        owner = k.system.owner_of(slot.name)
        if os.geteuid() == 0 and not owner:
            raise UsageError("no site user: a site never runs as root")
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        project = k.host.site_dir(slot.name)
        try:
            with open(k.host.logs_dir / "sites" / f"{slot.name}.log", "ab") as logfile:
                slot.zygote = None
                slot.proc = self._fork(slot, site, owner, status_w, logfile, for_jobs)
                slot.start_mode = "zygote" if slot.proc else "plain"
                if not slot.proc:
                    env_vars = {**shipped.environ(),
                                protocol.START: json.dumps(self.request(slot, for_jobs)),
                                "LINOHOST_LISTEN_FD": str(slot.sock.fileno()),
                                "LINOHOST_STATUS_FD": str(status_w)}
                    slot.proc = subprocess.Popen(
                        shipped.argv(env.bin_python, "worker", project), cwd=project,
                        stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                        pass_fds=(slot.sock.fileno(), status_w),
                        **k.system.site_process_kwargs(slot.name, env_vars))
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        try:
            slot.limits = Limits.of(k.host.cfg, site)
            k.fence.place(slot.name, slot.proc.pid, slot.limits, bool(owner))
        except OSError as e:
            log.warning("%s: worker %d not fenced: %s", slot.name, slot.proc.pid, e)
        os.set_blocking(status_r, False)
        return status_r

    def _fork(self, slot, site, owner, status_w, logfile, for_jobs):
        """A worker for *slot* from its group's zygote; None when there is no ready
        zygote (or it cannot fork now): then the worker starts plainly."""
        k = self.keeper
        z = k.pool.for_site(slot.name, group_of(k.host, site), slot.plain_reason, slot.tried)
        if z is None:
            return None
        slot.tried.add(z.name)
        request = {**self.request(slot, for_jobs),
                   "uid": owner[0] if owner else None, "gid": owner[1] if owner else None,
                   "environ": k.system.site_environ(slot.name)}
        try:
            pid = z.fork(request, [slot.sock.fileno(), status_w, logfile.fileno()])
        except ZygoteError as e:
            log.warning("%s: not forked from zygote %s: %s", slot.name, z.name, e)
            return None
        slot.zygote = z.name
        return ForkedWorker(pid)
