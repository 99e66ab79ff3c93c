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
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import time

from ..fs import atomic_write
from ..errors import ConfigError, UsageError
from ..model import config
from . import paths, schedules
from . import states as st
from .unavailable import answer_unavailable
from .zygotes import (INEXACT, JOBS_SOURCE, WORKER_SOURCE, ForkedWorker, Zygote, ZygoteError,
                      group_of, set_child_subreaper)

log = logging.getLogger("linohost.keeper")

BACKLOG = 1024
BOOT_FAILED = 3


class Slot:
    """What the keeper holds for one site."""

    def __init__(self, name, sock, fingerprint):
        self.name, self.sock, self.fingerprint = name, sock, fingerprint
        self.state = st.SLEEPING
        self.proc = self.status = None
        self.started = self.started_mono = self.ready_at = None
        self.requests_before = self.requests = 0
        self.last_request = None
        self.cold_starts = self.failures = 0
        self.last_failure = None
        self.last_start_s = None
        self.retry_at = 0.0
        self.removed = False
        self.buffer = b""
        self.group = None               # its group's key (None: its record unreadable)
        self.start_mode = None          # how its worker started: "zygote" or "plain"
        self.zygote = None              # the name of the zygote it was forked from
        self.plain_reason = None        # why it starts plainly (its zygote said so)
        self.tried = set()              # zygotes that could not fork it since it last started
        # Background tasks: when the site next has one (epoch or None), whether a
        # worker told us since the keeper started (or since `manage` ran), whether
        # the worker now was started for jobs, and when the last worker left.
        self.next_job = None
        self.jobs_known = False
        self.for_jobs = False
        self.job_wakes = 0
        self.left_at = None

    def row(self):
        now = time.time()
        return {
            "name": self.name, "state": self.state,
            "pid": self.proc.pid if self.proc else None,
            "uptime_s": round(now - self.started, 1) if self.proc and self.started else None,
            "requests": self.requests_before + self.requests,
            "last_request": (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_request))
                             if self.last_request else None),
            "cold_starts": self.cold_starts,
            "last_start_s": self.last_start_s,
            "start": self.start_mode,
            "plain_reason": self.plain_reason,
            "zygote": self.zygote,
            "last_failure": self.last_failure,
            "retry_in_s": (round(max(0.0, self.retry_at - time.monotonic()), 1)
                           if self.state == st.FAILED else None),
            "next_job": (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.next_job))
                         if self.next_job is not None and self.jobs_known else None),
            "job_wakes": self.job_wakes,
        }


class Keeper:
    def __init__(self, host, system, *, grace=30, web_group=None):
        self.host, self.system = host, system
        self.grace = grace
        self._config_seen = None
        self._apply_config()
        self.web_gid = grp.getgrnam(web_group).gr_gid if web_group and os.geteuid() == 0 else None
        self.slots = {}
        self.sel = selectors.DefaultSelector()
        self.signals = collections.deque()
        self.pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="503")
        self.stopping = False
        self._env_cache = {}
        self.zygotes = {}               # (group key, variant digest or None) -> Zygote
        # What sites said of their data where it differs from their group's demo data
        # (see zygotes.py): site -> (group key, digest); (group key, digest) -> tables.
        self.variant_of = {}
        self.variant_tables = {}
        self.commands = {}              # pid -> Command (warm manage.py runs)
        self.queue = {}                 # site -> since when (monotonic) it waits to start

    # -- the loop -----------------------------------------------------------------
    def run(self):
        """Serve until SIGTERM/SIGINT; return the exit code."""
        lock = self._lock()
        try:
            set_child_subreaper()
            self._prepare_dirs()
            self._load_variants()
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            signal.set_wakeup_fd(wake_w)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(s, lambda signum, frame: self.signals.append(signum))
            self.sel.register(wake_r, selectors.EVENT_READ, lambda f: _drain(f))
            self.reconcile()                      # every socket bound ...
            self._load_schedules()
            self.control = self._bind_control()   # ... before anyone can ask
            log.info("keeper %d ready: %d sites, idle timeout %ss", os.getpid(),
                     len(self.slots), self.idle_timeout or "never")
            next_tick = 0.0
            while not self.stopping:
                for key, _ in self.sel.select(timeout=1.0):
                    key.data(key.fileobj)
                self._dispatch_signals()
                if self.queue:
                    self.admit()
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
                self.reap_commands()

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

    def tick(self):
        self._apply_config()
        self.reap()
        self.reap_commands()
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.state == st.STARTING and now - slot.started_mono > self.start_timeout:
                log.error("%s: no answer %ss after start: killing its worker", slot.name,
                          self.start_timeout)
                slot.proc.kill()
        self.reconcile()
        self.wake_for_jobs()

    def wake_for_jobs(self):
        """Start sleeping sites whose next job has come, at most keeper.job_wakeups at
        a time: first every site no worker told us about yet (once after the keeper
        starts, after `linohost manage`), then the others no sooner than
        keeper.min_job_interval seconds after their last worker left."""
        if not self.jobs:
            return
        free = self.job_wakeups - sum(1 for s in self.slots.values() if s.for_jobs)
        if free <= 0:
            return
        now, mono = time.time(), time.monotonic()
        due = []
        for slot in self.slots.values():
            if slot.state != st.SLEEPING or slot.removed or self._zygote_coming(slot):
                continue
            rested = slot.left_at is None or mono - slot.left_at >= self.min_job_interval
            if not slot.jobs_known and (slot.left_at is None or rested):
                due.append((0, slot.name, slot))
            elif slot.jobs_known and slot.next_job is not None and slot.next_job <= now \
                    and rested:
                due.append((slot.next_job, slot.name, slot))
        for _, _, slot in sorted(due)[:free]:
            self.start(slot, for_jobs=True)

    # -- the registry ------------------------------------------------------------------
    def fingerprint(self, name):
        """What a site's process depends on: its record, settings, wsgi.py (mod_wsgi's
        restart convention, kept), its environment and the shared hook."""
        h = self.host
        reg = h.registry_dir / f"{name}.toml"
        files = [reg, h.site_dir(name) / "settings.py", h.site_dir(name) / "apache" / "wsgi.py",
                 h.local_dir / "djangosite_local.py"]
        env = self._env_of(reg)
        if env:
            files.append(h.envs_dir / env / "linohost-env.toml")
        out = []
        for p in files:
            try:
                s = p.stat()
                out.append((s.st_mtime_ns, s.st_size, s.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _env_of(self, reg):
        try:
            key = reg.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._env_cache.get(reg)
        if not cached or cached[0] != key:
            try:
                cached = (key, self.host.site(reg.stem).env)
            except Exception:              # being written: next tick
                return None
            self._env_cache[reg] = cached
        return cached[1]

    def reconcile(self):
        """Compare the sites held with the registry: add, remove, restart what changed."""
        wanted = set(self.host.site_names())
        for name in sorted(wanted - set(self.slots)):
            self.slots[name] = Slot(name, self._bind(name), self.fingerprint(name))
            self.slots[name].group = self._group(name)
            self._listen(self.slots[name])
            log.info("%s: added (sleeping)", name)
        for name in sorted(set(self.slots) - wanted):
            self.remove(self.slots[name])
        for name in sorted(wanted & set(self.slots)):
            slot = self.slots[name]
            fp = self.fingerprint(name)
            if fp != slot.fingerprint:
                slot.fingerprint = fp
                slot.group = self._group(name)
                log.info("%s: changed", name)
                self.restart(slot)
            elif slot.group is None:            # its record was being written
                slot.group = self._group(name)
        self._keep_zygotes()

    # -- zygotes -----------------------------------------------------------------------
    def _group(self, name):
        try:
            return group_of(self.host, self.host.site(name))
        except Exception:                  # noqa: BLE001 - being written: next tick
            return None

    def _keep_zygotes(self):
        """One ready zygote per group that has sites (when zygotes are on), and one per
        variant that keeper.variant_sites sites share: start the missing, restart the
        stale, stop those without sites."""
        wanted, counts = {}, collections.Counter()
        if self.use_zygotes:
            for name, slot in self.slots.items():
                if slot.group:
                    counts[(slot.group, None)] += 1
                    wanted.setdefault((slot.group, None), name)
            for name, (group, digest) in sorted(self.variant_of.items()):
                slot = self.slots.get(name)
                if slot and slot.group == group:
                    counts[(group, digest)] += 1
                    if self.variant_sites and counts[(group, digest)] >= self.variant_sites:
                        wanted.setdefault((group, digest), name)
        for key, z in self.zygotes.items():
            z.sites = counts[key]
        for key in list(self.zygotes):
            z = self.zygotes[key]
            z.poll()
            if key not in wanted or (z.state != "failed" and z.stale()):
                z.stop()
                if key not in wanted:
                    z.remove_files()
                    del self.zygotes[key]
                    log.info("zygote %s: stopped (no site of its group)", z.name)
        now = time.monotonic()
        for key, sample in wanted.items():
            if key not in self.zygotes:
                group, digest = key
                variant = (digest, self.variant_tables[key]) if digest else None
                z = self.zygotes[key] = Zygote(self.host, group, self.host.site(sample),
                                               variant=variant)
                z.on_close = self._unregister
        for key in wanted:
            if any(z.state == "starting" for z in self.zygotes.values()):
                break                           # one at a time: a start takes a core
            z = self.zygotes[key]
            if z.state == "stopped" or (z.state == "failed" and now >= z.retry_at):
                z.start()
                if z.sock is not None:
                    self.sel.register(z.sock, selectors.EVENT_READ,
                                      lambda s, z=z: self._zygote_says(z))

    def _zygote_says(self, z):
        sock = z.sock
        z.readable()
        if z.state == "ready":              # its first word said; forks answer directly
            self._unregister(sock)

    def _zygote_coming(self, slot):
        """Whether *slot*'s zygote (its variant's, or its group's) is still starting: its
        start can wait for a warm one."""
        if not self.use_zygotes:
            return False
        known = self.variant_of.get(slot.name)
        digest = known[1] if known and known[0] == slot.group else None
        z = self.zygotes.get((slot.group, digest)) or self.zygotes.get((slot.group, None))
        return z is not None and z.state == "starting"

    def _zygote_for(self, name, group, plain_reason=None, tried=()):
        """The ready zygote to fork *name* from: its variant's if it has one (else
        none once a zygote found that it differs), else its group's."""
        if not self.use_zygotes:
            return None
        known = self.variant_of.get(name)
        digest = known[1] if known and known[0] == group else None
        if digest is None and plain_reason:
            return None
        z = self.zygotes.get((group, digest))
        if z is None and digest and not plain_reason:
            z = self.zygotes.get((group, None))       # its variant's is not wanted (yet)
        if z is None or z.state != "ready" or z.name in tried:
            return None
        return z

    def _learn_variant(self, name, group, line):
        """A worker's ``variant DIGEST TABLES`` line: what *name* holds where Lino's
        start-up reads (its zygote differed there)."""
        digest, _, tables = line.partition(" ")
        if group is None or not digest:
            return
        try:
            self.variant_tables[(group, digest)] = json.loads(tables)
        except ValueError:
            return
        if self.variant_of.get(name) == (group, digest):
            return
        self.variant_of[name] = (group, digest)
        held = set(self.variant_of.values())
        for key in list(self.variant_tables):     # forget what no site holds any more
            if key not in held and key not in self.zygotes:
                del self.variant_tables[key]
        self._save_variants()

    def _load_schedules(self):
        """The task schedules workers reported before the keeper (re)started: only the
        sites whose task is due, or whose schedule is unknown, are woken for tasks."""
        for name, next_job in schedules.load(self.host, set(self.slots)).items():
            self.slots[name].next_job, self.slots[name].jobs_known = next_job, True

    def _save_schedules(self):
        schedules.save(self.host, {n: s.next_job for n, s in self.slots.items()
                                   if s.jobs_known and not s.removed})

    def _load_variants(self):
        """What sites told the keeper before it (re)started: their variants' zygotes
        start at once, not after a plain start of each site. Sites whose data changed
        since are found out at their next fork, as ever."""
        def key(group, digest):
            return tuple(tuple(x) if isinstance(x, list) else x for x in group), digest
        names = set(self.host.site_names())
        try:
            data = json.loads(paths.variants_file(self.host).read_text())
            tables = {key(g, d): t for g, d, t in data["tables"]}
            self.variant_of = {n: key(g, d) for n, g, d in data["sites"]
                               if n in names and key(g, d) in tables}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("not reading %s: %s", paths.variants_file(self.host), e)
            return
        self.variant_tables = {k: t for k, t in tables.items() if k in self.variant_of.values()}

    def _save_variants(self):
        data = {"sites": [[n, list(g), d] for n, (g, d) in sorted(self.variant_of.items())],
                "tables": [[list(g), d, t] for (g, d), t in self.variant_tables.items()]}
        try:
            atomic_write(paths.variants_file(self.host), json.dumps(data), mode=0o600)
        except OSError as e:
            log.warning("not keeping the sites' data variants: %s", e)

    def _unregister(self, fileobj):
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def _fork(self, slot, site, owner, status_w, logfile, for_jobs):
        """A worker for *slot* from its group's zygote; None when there is no ready
        zygote (or it cannot fork now): then the worker starts plainly."""
        z = self._zygote_for(slot.name, group_of(self.host, site), slot.plain_reason,
                             slot.tried)
        if z is None:
            return None
        slot.tried.add(z.name)
        request = {"site": slot.name, "project": str(self.host.site_dir(slot.name)),
                   "keeper_pid": os.getpid(), "threads": self.threads,
                   "idle_timeout": self.idle_timeout, "grace": self.grace,
                   "uid": owner[0] if owner else None, "gid": owner[1] if owner else None,
                   "environ": self.system.site_environ(slot.name),
                   "jobs": {"for_jobs": for_jobs, "min_interval": self.min_job_interval}
                   if self.jobs else None}
        try:
            pid = z.fork(request, [slot.sock.fileno(), status_w, logfile.fileno()])
        except ZygoteError as e:
            log.warning("%s: not forked from zygote %s: %s", slot.name, z.name, e)
            return None
        slot.zygote = z.name
        return ForkedWorker(pid)

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
    def _prepare_dirs(self):
        d = paths.sockets_dir(self.host)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.host.run_dir, 0o711)  # others may pass through to sockets/, not list
        (self.host.logs_dir / "sites").mkdir(parents=True, exist_ok=True)
        if self.web_gid is not None:        # the web server's group may connect, nobody else
            os.chown(d, 0, self.web_gid)
            os.chmod(d, 0o750)
        else:
            os.chmod(d, 0o700)

    def _bind(self, name):
        path = paths.site_socket(self.host, name)
        path.unlink(missing_ok=True)        # left by a keeper that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        if self.web_gid is not None:
            os.chown(path, 0, self.web_gid)
        os.chmod(path, 0o660)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return sock

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

    def _close(self, slot):
        self._unlisten(slot)
        slot.sock.close()
        paths.site_socket(self.host, slot.name).unlink(missing_ok=True)
        self.slots.pop(slot.name, None)
        if self.variant_of.pop(slot.name, None):
            self._save_variants()

    def incoming(self, slot):
        """A connection waits for a site no worker serves: start one (when admitted),
        or answer 503."""
        if slot.state == st.SLEEPING:
            self._unlisten(slot)                # its connections wait in the backlog
            self.queue.setdefault(slot.name, time.monotonic())
            self.admit()
        elif slot.state == st.FAILED and time.monotonic() >= slot.retry_at:
            self.start(slot)
        elif slot.state == st.FAILED:
            while True:
                try:
                    conn, _ = slot.sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                self.pool.submit(answer_unavailable, conn, slot.name)

    # -- admission -----------------------------------------------------------------------
    def admit(self):
        """Start the queued sites that may start now, in arrival order: at most
        keeper.max_starting plain starts at a time (four times as many forks), and a
        site whose zygote is starting waits for it (keeper.zygote_wait at most)
        rather than start plainly beside it and slow it down."""
        now = time.monotonic()
        starting = {"zygote": 0, "plain": 0}
        for s in self.slots.values():
            if s.state == st.STARTING and s.start_mode in starting:
                starting[s.start_mode] += 1
        limit = {"zygote": 4 * self.max_starting, "plain": self.max_starting}
        for name, since in list(self.queue.items()):
            slot = self.slots.get(name)
            if slot is None or slot.removed or slot.state != st.SLEEPING:
                del self.queue[name]
                continue
            waits = (not slot.plain_reason and self._zygote_coming(slot)
                     and now - since < self.zygote_wait)
            mode = "zygote" if self._zygote_for(name, slot.group, slot.plain_reason,
                                                slot.tried) else "plain"
            if waits or starting[mode] >= limit[mode]:
                continue
            del self.queue[name]
            self.start(slot)
            starting[slot.start_mode or mode] += 1

    # -- workers -----------------------------------------------------------------------
    def start(self, slot, for_jobs=False):
        self._to(slot, st.STARTING)
        slot.for_jobs = for_jobs
        self._unlisten(slot)
        slot.started = time.time()
        slot.started_mono = time.monotonic()
        try:
            site = self.host.site(slot.name)
            env = self.host.env(site.env)
            owner = self.system.owner_of(slot.name)
            if os.geteuid() == 0 and not owner:
                raise UsageError("no site user: a site never runs as root")
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            project = self.host.site_dir(slot.name)
            logfile = open(self.host.logs_dir / "sites" / f"{slot.name}.log", "ab")
            env_vars = {"LINOHOST_LISTEN_FD": str(slot.sock.fileno()),
                        "LINOHOST_STATUS_FD": str(status_w),
                        "LINOHOST_THREADS": str(self.threads),
                        "LINOHOST_IDLE_TIMEOUT": str(self.idle_timeout),
                        "LINOHOST_GRACE": str(self.grace),
                        "LINOHOST_KEEPER_PID": str(os.getpid())}
            if self.jobs:
                env_vars.update(LINOHOST_JOBS_SOURCE=JOBS_SOURCE,
                                LINOHOST_MIN_JOB_INTERVAL=str(self.min_job_interval),
                                LINOHOST_FOR_JOBS="1" if for_jobs else "0")
            try:
                slot.zygote = None
                slot.proc = self._fork(slot, site, owner, status_w, logfile, for_jobs)
                slot.start_mode = "zygote" if slot.proc else "plain"
                if not slot.proc:
                    slot.proc = subprocess.Popen(
                        [env.bin_python, "-c", WORKER_SOURCE, str(project)], cwd=project,
                        stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                        pass_fds=(slot.sock.fileno(), status_w),
                        **self.system.site_process_kwargs(slot.name, env_vars))
            finally:
                os.close(status_w)
                logfile.close()
        except Exception as e:            # noqa: BLE001 - any reason is the site's failure
            log.error("%s: cannot start a worker: %s", slot.name, e)
            self._failed(slot, f"cannot start a worker: {e}")
            return
        os.set_blocking(status_r, False)
        slot.status = status_r
        slot.buffer = b""
        self.sel.register(status_r, selectors.EVENT_READ, lambda f, slot=slot: self.report(slot))
        log.info("%s: starting worker %d (%s)%s", slot.name, slot.proc.pid, slot.start_mode,
                 " for background tasks" if for_jobs else "")

    def report(self, slot):
        """Read what the worker says on its status pipe."""
        try:
            data = os.read(slot.status, 4096)
        except BlockingIOError:
            return
        if not data:
            self._close_status(slot)
            return
        slot.buffer += data
        *lines, slot.buffer = slot.buffer.split(b"\n")
        for line in lines:
            words = line.decode().split()
            if words[:1] == ["ready"] and slot.state == st.STARTING:
                slot.ready_at = time.monotonic()
                slot.last_start_s = round(slot.ready_at - slot.started_mono, 3)
                if slot.for_jobs:
                    slot.job_wakes += 1
                else:
                    slot.cold_starts += 1
                slot.failures = 0
                slot.tried.clear()
                if slot.start_mode == "zygote":
                    slot.plain_reason = None
                self._to(slot, st.RUNNING)
                log.info("%s: worker %d ready in %.2f s", slot.name, slot.proc.pid,
                         slot.last_start_s)
            elif words[:1] == ["inexact"]:
                slot.plain_reason = line.decode().partition(" ")[2]
            elif words[:1] == ["variant"]:
                self._learn_variant(slot.name, slot.group, line.decode().partition(" ")[2])
            elif words[:1] == ["stats"] and len(words) == 3:
                slot.requests = int(words[1])
                if float(words[2]):
                    slot.last_request = float(words[2])
            elif words[:1] == ["next_job"] and len(words) == 2:
                next_job = None if words[1] == "-" else float(words[1])
                changed = (next_job, True) != (slot.next_job, slot.jobs_known)
                slot.next_job, slot.jobs_known = next_job, True
                if changed:
                    self._save_schedules()

    def _close_status(self, slot):
        if slot.status is not None:
            try:
                self.sel.unregister(slot.status)
            except KeyError:
                pass
            os.close(slot.status)
            slot.status = None

    def stop(self, slot):
        """Ask *slot*'s worker to finish its requests and leave."""
        if slot.state in (st.STARTING, st.RUNNING):
            self._to(slot, st.STOPPING)
            try:
                slot.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self):
        for slot in list(self.slots.values()):
            if slot.proc is None or slot.proc.poll() is None:
                continue
            code = slot.proc.returncode
            while slot.status is not None:        # what it said before leaving
                before = slot.status
                self.report(slot)
                if slot.status == before:
                    break
            self._close_status(slot)
            slot.requests_before += slot.requests
            slot.requests = 0
            slot.proc = None
            slot.for_jobs = False
            slot.left_at = time.monotonic()
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            if slot.state == st.STARTING and code == INEXACT and slot.plain_reason:
                log.info("%s: starts plainly: %s", slot.name, slot.plain_reason)
                self._to(slot, st.SLEEPING)
                self.start(slot)            # at once: its connections wait
                continue
            if slot.state == st.STARTING:
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

    def _failed(self, slot, reason):
        slot.failures += 1
        slot.last_failure = reason
        slot.retry_at = time.monotonic() + st.backoff(slot.failures)
        slot.proc = None
        slot.for_jobs = False
        self._to(slot, st.FAILED)
        log.error("%s: %s; next try in %d s", slot.name, reason, st.backoff(slot.failures))
        self._listen(slot)

    def _to(self, slot, state):
        st.check(slot.state, state)
        slot.state = state

    def shutdown(self):
        """Stop every worker (they finish their requests), remove every socket."""
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
        for z in self.zygotes.values():
            z.stop()
            z.remove_files()
        self.control.close()
        paths.control_socket(self.host).unlink(missing_ok=True)
        self.pool.shutdown(wait=True)
        log.info("keeper %d stopped", os.getpid())

    # -- control -----------------------------------------------------------------------
    def _bind_control(self):
        path = paths.control_socket(self.host)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, self._control)
        return sock

    def _control(self, sock):
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
                    reply = self.exec_command(request, fds, conn)
                else:
                    reply = self.command(request)
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

    def exec_command(self, request, fds, conn):
        """A warm ``manage.py`` run (or script) of a site, forked from its group's
        zygote with the caller's stdin, stdout and stderr; the caller hears its pid now
        and its exit code (or why it must start plainly) when it ends."""
        key = _group_key(request.get("group"))
        site = request.get("site")
        z = self._zygote_for(site, key)
        if z is None or len(fds) != 3:
            return {"ok": False, "error": f"no zygote ready for {site}"}
        owner = self.system.owner_of(site)
        if os.geteuid() == 0 and not owner:
            return {"ok": False, "error": "no site user: a site never runs as root"}
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        fork = {"site": site, "project": request["project"], "keeper_pid": os.getpid(),
                "uid": owner[0] if owner else None, "gid": owner[1] if owner else None,
                "environ": {**request.get("environ", {}), **self.system.site_environ(site)},
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
            inexact = [line.partition(" ")[2] for line in said if line.startswith("inexact ")]
            for line in said:
                if line.startswith("variant "):
                    self._learn_variant(c.site, c.group, line.partition(" ")[2])
            reply = {"inexact": inexact[0]} if code == INEXACT and inexact else {"exit": code}
            try:
                c.conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            c.conn.close()

    def command(self, request):
        cmd = request.get("cmd")
        if cmd == "status":
            now = time.monotonic()
            queued = {n: round(now - t, 1) for n, t in self.queue.items()}
            return {"ok": True, "pid": os.getpid(),
                    "sites": [{**s.row(), "queued_s": queued.get(n)}
                              for n, s in sorted(self.slots.items())],
                    "zygotes": [z.row() for z in self.zygotes.values()]}
        if cmd == "reload":
            self.reconcile()
            return {"ok": True, "sites": sorted(self.slots)}
        if cmd == "restart":
            slot = self.slots.get(request.get("site"))
            if not slot:
                return {"ok": False, "error": f"no site named {request.get('site')!r}"}
            self.restart(slot)
            return {"ok": True}
        if cmd == "jobs":            # the site's schedule may have changed: wake it soon
            slot = self.slots.get(request.get("site"))
            if not slot:
                return {"ok": False, "error": f"no site named {request.get('site')!r}"}
            slot.jobs_known, slot.left_at = False, None
            self._save_schedules()
            return {"ok": True}
        if cmd == "stop":
            self.stopping = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _lock(self):
        self.host.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.keeper_lock(self.host), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"a keeper already runs for {self.host.root}") from None
        return fd


class Command:
    """A warm command: the caller's connection, its process, its status pipe, its site
    and group."""

    def __init__(self, conn, proc, status, site, group):
        self.conn, self.proc, self.status = conn, proc, status
        self.site, self.group = site, group


def _group_key(value):
    """A group key from JSON (lists back to tuples)."""
    if not isinstance(value, list):
        return None
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
