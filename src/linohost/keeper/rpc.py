"""The keeper's control interface: the server side of :mod:`linohost.keeper.control`.

One JSON line in, one JSON line out, over ``ROOT/run/keeper.sock`` (owner only).
Each command is a method named in :attr:`ControlInterface.COMMANDS` (supervisor's
``rpcinterface.py``): the loop accepts, this module decodes, dispatches and answers.
``exec`` is the one command that keeps its connection open: the warm command's exit
code is the second line of its answer.
"""

import json
import logging
import os
import selectors
import socket
import time

from . import paths, protocol
from . import states as st
from .zygotes import ForkedWorker, ZygoteError

log = logging.getLogger("linohost.keeper")


class NoSite(LookupError):
    """A command names a site the keeper does not hold."""


class Command:
    """A warm command: the caller's connection, its process, its status pipe, its site
    and group."""

    def __init__(self, conn, proc, status, site, group):
        self.conn, self.proc, self.status = conn, proc, status
        self.site, self.group = site, group


class ControlInterface:
    """The keeper's control socket and the commands it answers."""

    COMMANDS = {"status": "status", "reload": "reload", "restart": "restart",
                "wake": "wake", "sleep": "sleep", "jobs": "jobs", "stop": "stop"}

    def __init__(self, keeper):
        self.keeper = keeper
        self.sock = None
        self.commands = {}              # pid -> Command (warm manage.py runs)

    # -- the socket ----------------------------------------------------------------------
    def bind(self):
        """Bind the control socket (owner only) and let the keeper's selector watch it."""
        path = paths.control_socket(self.keeper.host)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.keeper.sel.register(sock, selectors.EVENT_READ, self.accept)
        self.sock = sock

    def close(self):
        """Close the control socket and remove its file."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        paths.control_socket(self.keeper.host).unlink(missing_ok=True)

    def accept(self, sock):
        """Answer one caller: read its request (and the descriptors it passes)."""
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return
        fds = []
        try:
            conn.settimeout(5)
            try:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
                while data and not data.endswith(b"\n"):
                    more = conn.recv(1 << 20)
                    if not more:
                        break
                    data += more
                request = json.loads(data or b"{}")
                if request.get("cmd") == "exec":
                    reply = self.exec(request, fds, conn)
                else:
                    reply = self.dispatch(request)
            except (OSError, ValueError) as e:
                reply = {"ok": False, "error": str(e)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
        finally:
            for fd in fds:
                os.close(fd)
            if not any(c.conn is conn for c in self.commands.values()):
                conn.close()

    def dispatch(self, request):
        """The reply to *request* (a dict with ``cmd``), from the method that answers it."""
        cmd = request.get("cmd")
        name = self.COMMANDS.get(cmd) if isinstance(cmd, str) else None
        if name is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        try:
            return getattr(self, name)(request)
        except NoSite as e:
            return {"ok": False, "error": f"no site named {e}"}

    def _slot(self, request):
        slot = self.keeper.slots.get(request.get("site"))
        if slot is None or slot.removed:
            raise NoSite(repr(request.get("site")))
        return slot

    # -- the commands ----------------------------------------------------------------------
    def status(self, request):
        """Every site's row (with how long it waits to start) and every zygote's."""
        k = self.keeper
        now = time.monotonic()
        queued = {n: round(now - t, 1) for n, t in k.admission.queue.items()}
        return {"ok": True, "pid": os.getpid(), "fence": k.fence.kind,
                "sites": [{**s.row(), "queued_s": queued.get(n),
                           "websockets_waiting": (k.porch.held(n)
                                                  if s.websockets is not None else None),
                           "memory_peak_kib": (k.fence.peak_kib(n, s.proc.pid if s.proc else None)
                                               if s.limits else None)}
                          for n, s in sorted(k.slots.items())],
                "zygotes": [z.row() for z in k.pool.zygotes.values()]}

    def reload(self, request):
        """Compare the sites held with the registry now."""
        self.keeper.reconcile()
        return {"ok": True, "sites": sorted(self.keeper.slots)}

    def restart(self, request):
        """A new worker for the site at its next request."""
        self.keeper.restart(self._slot(request))
        return {"ok": True}

    def wake(self, request):
        """Start the site's worker now, as its first request would (a failed site:
        its next try now)."""
        slot = self._slot(request)
        if slot.state == st.FAILED:
            slot.retry_at = 0
        if slot.state in (st.SLEEPING, st.FAILED):
            self.keeper.incoming(slot)
        return {"ok": True, "state": slot.state}

    def sleep(self, request):
        """Let the site's worker finish its requests and leave now."""
        slot = self._slot(request)
        self.keeper.stop(slot)
        return {"ok": True, "state": slot.state}

    def jobs(self, request):
        """The site's schedule may have changed: wake it soon."""
        slot = self._slot(request)
        slot.jobs_known, slot.left_at = False, None
        self.keeper.wakeups.save()
        return {"ok": True}

    def stop(self, request):
        """Stop the keeper (its loop ends after this answer)."""
        self.keeper.stopping = True
        return {"ok": True}

    # -- warm commands -----------------------------------------------------------------------
    def exec(self, request, fds, conn):
        """A warm ``manage.py`` run (or script) of a site, forked from its group's
        zygote with the caller's stdin, stdout and stderr; the caller hears its pid now
        and its exit code (or why it must start plainly) when it ends."""
        k = self.keeper
        key = _group_key(request.get("group"))
        site = request.get("site")
        z = k.pool.for_site(site, key)
        if z is None or len(fds) != 3:
            return {"ok": False, "error": f"no zygote ready for {site}"}
        owner = k.system.owner_of(site)
        if os.geteuid() == 0 and not owner:
            return {"ok": False, "error": "no site user: a site never runs as root"}
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        fork = {"site": site, "project": request["project"], "keeper_pid": os.getpid(),
                "uid": owner[0] if owner else None, "gid": owner[1] if owner else None,
                "environ": {**request.get("environ", {}), **k.system.site_environ(site)},
                "command": {"argv": request["argv"], "script": request.get("script")}}
        try:
            pid = z.fork(fork, [*fds, status_w])
        except ZygoteError as e:
            os.close(status_r)
            return {"ok": False, "error": str(e)}
        finally:
            os.close(status_w)
        self.commands[pid] = Command(conn, ForkedWorker(pid), status_r, site, key)
        log.info("%s: warm command %d: manage.py %s", site, pid,
                 " ".join(request["argv"])[:200] if not request.get("script") else "(script)")
        return {"ok": True, "pid": pid}

    def reap_commands(self):
        """Answer the callers of warm commands that ended: their exit code, or why the
        command must run plainly; learn the variants they reported."""
        for pid, c in list(self.commands.items()):
            code = c.proc.poll()
            if code is None:
                continue
            del self.commands[pid]
            try:
                said = os.read(c.status, 65536).decode(errors="replace").splitlines()
            except OSError:
                said = []
            os.close(c.status)
            said = [protocol.heard(line) for line in said]
            inexact = [rest for word, rest in said if word == protocol.NOT_EXACT]
            for word, rest in said:
                if word == protocol.VARIANT:
                    self.keeper.pool.learn_variant(c.site, c.group, rest)
            reply = ({"inexact": inexact[0]} if code == protocol.INEXACT and inexact
                     else {"exit": code})
            try:
                c.conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            c.conn.close()


def _group_key(value):
    """A group key from JSON (lists back to tuples)."""
    if not isinstance(value, list):
        return None
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)
