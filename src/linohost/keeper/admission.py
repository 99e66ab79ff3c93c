"""Which waiting sites the keeper starts now, and which workers it lets go for them.

A sleeping site's first connections wait in its socket's backlog while the site is
queued (in arrival order). It starts when all of these allow it:

- starts at once: at most ``keeper.max_starting`` plain starts (four times as many
  forks from a zygote);
- its zygote: a site whose group's zygote is starting waits for it (at most
  ``keeper.zygote_wait`` seconds) rather than start plainly beside it;
- workers: at most ``keeper.max_workers`` run or start at once (0: no limit);
- memory: after the start, the host still has ``keeper.min_free_memory`` MiB
  available, counting what the workers starting now will take (each start is
  assumed to take what the last workers of its kind held when they became ready).

When workers or memory are short, the idlest workers go first (least recently
used; those with open websockets last): they finish their requests and leave.
Only when none can go and none is leaving do the site's waiting connections get
the keeper's 503 with ``Retry-After`` (logged, counted in ``status``).

Workers grow after their start (a first request, a big report): when the host's
available memory falls under the floor at any time, the idlest workers that served
no request for ``IDLE_BEFORE_RELIEF`` seconds leave until what they hold covers the
shortage (:meth:`Admission.relieve`, every second).
"""

import logging
import time

from .. import processes
from . import states as st
from .unavailable import answer_unavailable

log = logging.getLogger("linohost.keeper")

#: What a worker is assumed to take until one of its kind was measured (KiB): a plain
#: Lino start (research/keeper: about 280 MiB), a fork (what it adds to its zygote).
ASSUMED_KIB = {"plain": 300 * 1024, "zygote": 100 * 1024}
#: How many measured workers of a kind the estimate remembers (it takes the largest).
REMEMBERED = 16
#: Retry-After of the 503 when nothing can start (seconds).
RETRY_AFTER = 30
#: Seconds without a request before a worker may go to give memory back.
IDLE_BEFORE_RELIEF = 5


class Admission:
    """The keeper's queue of sites waiting to start, and the rules above."""

    def __init__(self, keeper):
        self.keeper = keeper
        self.queue = {}                 # site -> since when (monotonic) it waits
        self.measured = {"plain": [], "zygote": []}

    # -- what the keeper tells it ---------------------------------------------------
    def enqueue(self, slot):
        self.queue.setdefault(slot.name, time.monotonic())

    def waiting_since(self, name):
        return self.queue.get(name)

    def ready(self, slot):
        """*slot*'s worker is ready: remember what a worker of its kind holds."""
        uss = processes.memory_of(slot.proc.pid)["uss_kib"] if slot.proc else None
        if uss and slot.start_mode in self.measured:
            seen = self.measured[slot.start_mode]
            seen.append(uss)
            del seen[:-REMEMBERED]
            slot.cost_kib = uss

    def cost(self, mode):
        seen = self.measured.get(mode)
        return max(seen) if seen else ASSUMED_KIB.get(mode, ASSUMED_KIB["plain"])

    # -- the decision ---------------------------------------------------------------
    def admit(self):
        """Start the queued sites that may start now, in arrival order."""
        k = self.keeper
        now = time.monotonic()
        slots = k.slots.values()
        starting = {"zygote": 0, "plain": 0}
        for s in slots:
            if s.state == st.STARTING and s.start_mode in starting:
                starting[s.start_mode] += 1
        limit = {"zygote": 4 * k.max_starting, "plain": k.max_starting}
        for name, since in list(self.queue.items()):
            slot = k.slots.get(name)
            if slot is None or slot.removed or slot.state != st.SLEEPING:
                del self.queue[name]
                continue
            waits = (not slot.plain_reason and k.pool.coming(slot)
                     and now - since < k.zygote_wait)
            mode = "zygote" if k.pool.for_site(name, slot.group, slot.plain_reason,
                                             slot.tried) else "plain"
            if waits or starting[mode] >= limit[mode]:
                continue
            room = self._room(mode)
            if room == "wait":
                continue
            if room == "none":
                del self.queue[name]
                self.refuse(slot)
                continue
            del self.queue[name]
            k.start(slot)
            starting[slot.start_mode or mode] += 1

    def _shortage(self, mode):
        """(workers too many, KiB of memory short) for one more worker of *mode*, and
        the live (starting or running) and leaving slots."""
        k = self.keeper
        slots = list(k.slots.values())
        live = [s for s in slots if s.state in (st.STARTING, st.RUNNING)]
        leaving = [s for s in slots if s.state == st.STOPPING]
        too_many = len(live) + 1 - k.max_workers if k.max_workers else 0
        short_kib = 0
        available = _available_kib() if k.min_free_kib else None
        if available is not None:
            coming = sum(self.cost(s.start_mode) for s in live if s.state == st.STARTING)
            short_kib = k.min_free_kib + coming + self.cost(mode) - available
        return too_many, short_kib, live, leaving

    def fits(self, mode):
        """Whether a worker of *mode* may start now without letting another go (a
        wake-up for background tasks never makes room)."""
        too_many, short_kib, _, _ = self._shortage(mode)
        return too_many <= 0 and short_kib <= 0 and not self.queue

    def _room(self, mode):
        """"go" when a worker of *mode* fits now; else "wait" when workers were asked to
        leave (now, or before) for it; "none" when nothing can go."""
        k = self.keeper
        too_many, short_kib, live, leaving = self._shortage(mode)
        if too_many <= 0 and short_kib <= 0:
            return "go"
        # What the leaving workers still hold comes back (their count already has).
        freed = sum(processes.memory_of(s.proc.pid)["uss_kib"] or 0
                    for s in leaving if s.proc)
        let_go = []
        for s in sorted((s for s in live if s.state == st.RUNNING), key=_idleness):
            if too_many <= len(let_go) and short_kib <= freed:
                break
            let_go.append(s)
            freed += processes.memory_of(s.proc.pid)["uss_kib"] or s.cost_kib or 0
        for s in let_go:
            log.info("%s: worker %d let go (least recently used) to make room",
                     s.name, s.proc.pid)
            k.stop(s)
        if too_many <= len(let_go) and short_kib <= 0:
            return "go"                 # a worker too many, not memory: start beside them
        if let_go or leaving or any(s.state == st.STARTING for s in live):
            return "wait"               # memory comes back as they leave (or start)
        return "none"

    def relieve(self):
        """Under ``keeper.min_free_memory`` now: let the idlest workers go (those that
        served no request for a few seconds) until what they hold, with what the
        leaving workers hold, covers the shortage."""
        k = self.keeper
        available = _available_kib() if k.min_free_kib else None
        if available is None or available >= k.min_free_kib:
            return
        short = k.min_free_kib - available
        slots = list(k.slots.values())
        freed = sum(processes.memory_of(s.proc.pid)["uss_kib"] or 0
                    for s in slots if s.state == st.STOPPING and s.proc)
        now = time.time()
        idle = [s for s in slots if s.state == st.RUNNING and s.proc
                and now - (s.last_request or s.ready_wall or now) >= IDLE_BEFORE_RELIEF]
        for s in sorted(idle, key=_idleness):
            if freed >= short:
                break
            freed += processes.memory_of(s.proc.pid)["uss_kib"] or 0
            log.info("%s: worker %d let go (least recently used): the host has %d MiB "
                     "available, under keeper.min_free_memory", s.name, s.proc.pid,
                     available // 1024)
            k.stop(s)

    def refuse(self, slot):
        """Answer the site's waiting connections with 503 and Retry-After."""
        n = 0
        while True:
            try:
                conn, _ = slot.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            n += 1
            self.keeper.responders.submit(answer_unavailable, conn, slot.name, RETRY_AFTER)
        slot.refused += n
        log.warning("%s: not started: the host is short of memory (keeper.min_free_memory) "
                    "and no worker can be let go; %d request(s) answered 503", slot.name, n)
        self.keeper._listen(slot)


def _available_kib():
    try:
        return processes.available_kib()
    except OSError as e:                    # no MemAvailable: no memory check
        log.warning("keeper.min_free_memory not applied: %s", e)
        return None


def _idleness(slot):
    """Sort key: the idlest first; a worker with open websockets after all others."""
    used = slot.last_request or slot.ready_wall or 0.0
    return (bool(slot.websockets), used)
