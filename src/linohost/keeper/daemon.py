"""The keeper: one process per host that holds every site's socket and its worker.

It binds one listening unix socket per site (``ROOT/run/sockets/SITE.sock``)
before anything else, so the web server's connections are never refused: they
wait in the socket's backlog. On the first connection to a sleeping site it
starts that site's worker (:mod:`linohost.keeper.worker`, in the site's
environment, as the site's user), which inherits the socket and serves it; a
worker idle for ``keeper.idle_timeout`` seconds leaves and the site sleeps.
A site whose worker cannot start gets a 503 page from the keeper itself and is
retried with backoff.

The registry is the truth: every second (and at once on ``reload``) the keeper
compares the sites it holds with the registry and the files a site's process
depends on (supervisor's added / changed / removed): a new site gets its
socket, a removed one loses worker and socket, a changed one gets a new worker
at its next request. No other site's worker is touched.

Signal handlers only enqueue; the loop dispatches (gunicorn's arbiter).
"""

import collections
import concurrent.futures
import fcntl
import grp
import logging
import os
import selectors
import signal
import time

from ..errors import ConfigError, UsageError
from ..model import config
from . import paths, protocol, sockets, statusserver
from .actions import Actions
from .admission import Admission
from .alerts import Alerts
from .pool import ZygotePool
from .porch import Porch
from .launch import Launcher
from .registry import Registry
from .reports import Reports
from .slot import Done, Slot
from .fence import Fence
from . import states as st
from .rpc import ControlInterface
from .unavailable import answer_unavailable
from .wakeups import Wakeups
from .zygotes import set_child_subreaper

log = logging.getLogger("linohost.keeper")

#: Seconds a site whose worker was killed for its memory answers 503 before it starts
#: again (a request that makes it grow without end would else kill it again at once).
OOM_PAUSE = 5


class Keeper:
    """The keeper's loop and what it holds: the sites' slots (:mod:`.slot`), the
    zygotes (:mod:`.pool`), the queue of sites waiting to start (:mod:`.admission`),
    the fence around workers (:mod:`.fence`), the control interface (:mod:`.rpc`)."""

    def __init__(self, host, system, *, grace=30, web_group=None):
        self.host, self.system = host, system
        self.grace = grace
        self._config_seen = None
        self._apply_config()
        self.web_gid = grp.getgrnam(web_group).gr_gid if web_group and os.geteuid() == 0 else None
        self.slots = {}
        self.sel = selectors.DefaultSelector()
        self.signals = collections.deque()
        self.responders = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="503")
        self.stopping = False
        self.registry = Registry(host)
        self.pool = ZygotePool(self)
        self.control = ControlInterface(self)
        self.admission = Admission(self)
        self.fence = Fence(host.root)
        self.alerts = Alerts(self)
        self.wakeups = Wakeups(self)
        self.launcher = Launcher(self)
        self.actions = Actions(host)
        self.reports = Reports(self)
        self.porch = Porch()

    # -- the loop -----------------------------------------------------------------
    def run(self):
        """Serve until SIGTERM/SIGINT; return the exit code."""
        lock = self._lock()
        try:
            set_child_subreaper()
            sockets.prepare_dirs(self.host, self.web_gid)
            self.pool.load_variants()
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            signal.set_wakeup_fd(wake_w)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(s, lambda signum, frame: self.signals.append(signum))
            self.sel.register(wake_r, selectors.EVENT_READ, lambda f: _drain(f))
            self.porch.start()
            self.reconcile()                      # every socket bound ...
            self.wakeups.load()
            self.control.bind()                   # ... before anyone can ask
            self.status_server = statusserver.for_keeper(self).start()
            log.info("keeper %d ready: %d sites, idle timeout %ss", os.getpid(),
                     len(self.slots), self.idle_timeout or "never")
            next_tick = 0.0
            while not self.stopping:
                for key, _ in self.sel.select(timeout=1.0):
                    key.data(key.fileobj)
                self._dispatch_signals()
                if self.admission.queue:
                    self.admission.admit()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + 1.0
                    self.tick()
            self.shutdown()
            return 0
        finally:
            os.close(lock)

    def _dispatch_signals(self):
        while self.signals:
            signum = self.signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("signal %s: stopping", signal.Signals(signum).name)
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reconcile()
            elif signum == signal.SIGCHLD:
                self.reap()
                self.control.reap_commands()

    def _apply_config(self):
        """(Re)read the host config's keeper keys; they apply to workers started later."""
        try:
            seen = self.host.config_path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if seen == self._config_seen:
            return
        if self._config_seen is not None:
            try:
                self.host.cfg = config.load(self.host.config_path)
            except ConfigError as e:
                log.error("not applying the changed host config: %s", e)
                self._config_seen = seen
                return
            log.info("host config changed: applying its keeper keys to new workers")
        self._config_seen = seen
        cfg = self.host.cfg
        self.idle_timeout = cfg["keeper.idle_timeout"]
        self.threads = cfg["keeper.threads"]
        self.start_timeout = cfg["keeper.start_timeout"]
        self.use_zygotes = cfg["keeper.zygotes"]
        self.variant_sites = cfg["keeper.variant_sites"]
        self.jobs = cfg["keeper.jobs"]
        self.job_wakeups = cfg["keeper.job_wakeups"]
        self.min_job_interval = cfg["keeper.min_job_interval"]
        self.max_starting = cfg["keeper.max_starting"] or os.cpu_count() or 1
        self.zygote_wait = cfg["keeper.zygote_wait"]
        self.max_workers = cfg["keeper.max_workers"]
        self.min_free_kib = cfg["keeper.min_free_memory"] * 1024

    def tick(self):
        self._apply_config()
        self.reap()
        self.control.reap_commands()
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.state == st.STARTING and now - slot.started_mono > self.start_timeout:
                log.error("%s: no answer %ss after start: killing its worker", slot.name,
                          self.start_timeout)
                slot.proc.kill()
        self.reconcile()
        self.wakeups.tick()
        self.admission.relieve()
        self.alerts.tick()

    def reconcile(self):
        """Compare the sites held with the registry: add, remove, restart what changed."""
        reg = self.registry
        wanted = reg.names()
        for name in sorted(wanted - set(self.slots)):
            self.slots[name] = Slot(name, sockets.bind(self.host, name, self.web_gid),
                                    reg.fingerprint(name))
            self.slots[name].group = reg.group(name)
            self._listen(self.slots[name])
            if paths.ws_socket(self.host, name).is_socket():  # left by a live site's worker
                self.slots[name].websockets = 0                 # or the last keeper's porch
                self._porch(self.slots[name])
            log.info("%s: added (sleeping)", name)
        for name in sorted(set(self.slots) - wanted):
            self.remove(self.slots[name])
        for name in sorted(wanted & set(self.slots)):
            slot = self.slots[name]
            fp = reg.fingerprint(name)
            if fp != slot.fingerprint:
                slot.fingerprint = fp
                slot.group = reg.group(name)
                log.info("%s: changed", name)
                self.restart(slot)
            elif slot.group is None:            # its record was being written
                slot.group = reg.group(name)
        self.pool.keep()

    def _unregister(self, fileobj):
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def restart(self, slot):
        """A new worker for *slot* at its next request; the old one finishes first."""
        slot.failures = 0
        slot.plain_reason = None
        slot.tried.clear()
        if slot.state == st.FAILED:
            self._to(slot, st.SLEEPING)
        elif slot.proc:
            self.stop(slot)

    def remove(self, slot):
        slot.removed = True
        if slot.proc:
            self.stop(slot)
        else:
            self._close(slot)
        log.info("%s: removed", slot.name)

    # -- sockets -----------------------------------------------------------------------
    def _listen(self, slot):
        """Wait for the next connection to *slot* ourselves (no worker holds it)."""
        try:
            self.sel.register(slot.sock, selectors.EVENT_READ, lambda s, slot=slot: self.incoming(slot))
        except KeyError:
            pass                            # already registered

    def _unlisten(self, slot):
        try:
            self.sel.unregister(slot.sock)
        except KeyError:
            pass

    def _porch(self, slot):
        """A live site sleeps: its websockets wait at the porch (:mod:`.porch`)."""
        if slot.websockets is not None and not slot.removed:
            self.porch.open(slot.name, paths.ws_socket(self.host, slot.name))

    def _close(self, slot):
        if slot.removed:                    # (at a stop its socket file stays: porch.stop)
            self.porch.close(slot.name)
        self._unlisten(slot)
        slot.sock.close()
        paths.site_socket(self.host, slot.name).unlink(missing_ok=True)
        self.slots.pop(slot.name, None)
        self.fence.release(slot.name)
        self.pool.forget(slot.name)

    def incoming(self, slot):
        """A connection waits for a site no worker serves: start one (when admitted),
        or answer 503."""
        if slot.state == st.SLEEPING:
            self._unlisten(slot)                # its connections wait in the backlog
            self.admission.enqueue(slot)        # the loop admits once it has read all
                                                # that is ready (workers' stats first)
        elif slot.state == st.FAILED and time.monotonic() >= slot.retry_at:
            self.start(slot)
        elif slot.state == st.FAILED:
            while True:
                try:
                    conn, _ = slot.sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                self.responders.submit(answer_unavailable, conn, slot.name)

    # -- workers -----------------------------------------------------------------------
    def start(self, slot, for_jobs=False):
        """Start a worker for *slot* (:mod:`.launch`); it says ``ready`` on its status
        pipe (:mod:`.reports`). *for_jobs*: woken for its background tasks, not for a
        request."""
        self._to(slot, st.STARTING)
        slot.for_jobs = for_jobs
        self._unlisten(slot)
        slot.started = time.time()
        slot.started_mono = time.monotonic()
        try:
            slot.status = self.launcher.launch(slot, for_jobs)
        except Exception as e:            # noqa: BLE001 - any reason is the site's failure
            log.error("%s: cannot start a worker: %s", slot.name, e)
            self._failed(slot, f"cannot start a worker: {e}")
            return
        slot.buffer = b""
        self.sel.register(slot.status, selectors.EVENT_READ,
                          lambda f, slot=slot: self.reports.read(slot))
        log.info("%s: starting worker %d (%s)%s", slot.name, slot.proc.pid, slot.start_mode,
                 " for background tasks" if for_jobs else "")

    def stop(self, slot):
        """Ask *slot*'s worker to finish its requests and leave."""
        if slot.state in (st.STARTING, st.RUNNING):
            self._to(slot, st.STOPPING)
            try:
                slot.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap_children(self):
        """Collect every child that ended, with one ``waitpid(-1)``: the keeper is a
        subreaper, so a process whose parent ended (a worker's own child, say) becomes
        its child too. A worker, zygote, warm command or backup gets its exit code (their
        ``poll()`` returns it); any other is an orphan, collected and logged."""
        owners = {p.pid: p for p in (*(s.proc for s in self.slots.values() if s.proc),
                                     *(z.proc for z in self.pool.zygotes.values() if z.proc),
                                     *(c.proc for c in self.control.commands.values()),
                                     *self.actions.processes())}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid in owners:
                owners[pid].returncode = code
            else:
                log.info("collected process %d (exit code %s): an orphan", pid, code)

    def reap(self):
        """Collect the workers that ended: read what they said last, then put their
        slot to sleep (or to failed, or start it plainly when its zygote's fork was
        inexact) and listen for its next connection."""
        self.reap_children()
        for slot in list(self.slots.values()):
            if slot.proc is None or slot.proc.poll() is None:
                continue
            code = slot.proc.returncode
            self.reports.read_to_end(slot)        # what it said before leaving
            slot.requests_before += slot.requests
            slot.requests = 0
            slot.done_before, slot.done = slot.done_before + slot.done, Done()
            slot.messages_before += slot.messages
            slot.messages = 0
            if slot.websockets is not None:
                slot.websockets = 0
            slot.proc = None
            slot.for_jobs = False
            slot.left_at = time.monotonic()
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            if slot.state == st.STARTING and code == protocol.INEXACT and slot.plain_reason:
                log.info("%s: starts plainly: %s", slot.name, slot.plain_reason)
                self._to(slot, st.SLEEPING)
                self.start(slot)            # at once: its connections wait
                continue
            if self.fence.killed_for_memory(slot.name):
                reason = (f"worker killed: over its memory limit ({slot.limits.memory_mib} "
                          f"MiB, [limits] memory)")
                self._failed(slot, reason, at_least=OOM_PAUSE)
                self.alerts.killed_for_memory(slot, reason)
            elif slot.state == st.STARTING:
                self._failed(slot, f"worker failed to start ({how}; see logs/sites/"
                                   f"{slot.name}.log)")
            else:
                if code != 0 and slot.state != st.STOPPING:
                    slot.last_failure = f"worker died ({how})"
                    log.warning("%s: worker died (%s)", slot.name, how)
                else:
                    log.info("%s: worker left (%s)", slot.name, how)
                self._to(slot, st.SLEEPING)
            if slot.removed:
                self._close(slot)
            else:
                self._listen(slot)     # queued connections start the next worker at once
                self._porch(slot)

    def _failed(self, slot, reason, at_least=0):
        """*slot*'s worker failed: the keeper answers its requests (503) and starts it
        again after a backoff (*at_least* seconds)."""
        slot.failures += 1
        slot.failed_starts += 1
        slot.last_failure = reason
        wait = max(at_least, st.backoff(slot.failures))
        slot.retry_at = time.monotonic() + wait
        slot.proc = None
        slot.for_jobs = False
        self._to(slot, st.FAILED)
        log.error("%s: %s; next try in %d s", slot.name, reason, wait)
        self._listen(slot)

    def _to(self, slot, state):
        st.check(slot.state, state)
        slot.state = state

    def shutdown(self):
        """Stop every worker (they finish their requests), remove every socket."""
        self.status_server.close()
        running = [s for s in self.slots.values() if s.proc]
        for slot in running:
            self.stop(slot)
        deadline = time.monotonic() + self.grace + 5
        while any(s.proc for s in running) and time.monotonic() < deadline:
            time.sleep(0.1)
            self.reap()
        for slot in running:
            if slot.proc:
                log.warning("%s: worker %d did not leave: killing it", slot.name, slot.proc.pid)
                slot.proc.kill()
                slot.proc.wait()
        for slot in list(self.slots.values()):
            self._close(slot)
        self.porch.stop()                   # the live sites' socket files stay: markers
        self.pool.stop_all()
        self.fence.close(())
        self.control.close()
        self.responders.shutdown(wait=True)
        log.info("keeper %d stopped", os.getpid())

    def _lock(self):
        self.host.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.keeper_lock(self.host), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"a keeper already runs for {self.host.root}") from None
        return fd


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
