"""The thread that feeds :mod:`.history`, beside the keeper's loop and never blocking
it: every ``keeper.history_interval`` seconds it reads the keeper's status rows
(through the retrying callable of :func:`.statusserver.for_keeper`), each worker's PSS
and the host's available memory, adds one sample and saves the history file; it also
lets :class:`.sitefacts.SiteFacts` measure the sites' disk use (at most every 15
minutes)."""
import logging
import threading
import time

from .. import processes

log = logging.getLogger("linohost.keeper")

#: Seconds between two looks at the clock (a changed interval applies within this).
TICK = 1.0


class Sampler:
    """Samples *status* into *history* every *interval()* seconds and saves it to
    *path*; *facts* (optional) measures disks."""

    def __init__(self, status, history, path, interval, facts=None,
                 memory=processes.memory_of, available=processes.available_kib):
        self.status, self.history, self.path = status, history, path
        self.interval, self.facts = interval, facts
        self.memory, self.available = memory, available
        self.last = max(history.times)          # a restart keeps the rhythm
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="history", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)

    def _run(self):
        while True:
            now = time.time()
            if now - self.last >= self.interval():
                try:
                    self.sample(now)
                except Exception:               # noqa: BLE001 - the next one may do
                    log.exception("history: no sample")
            if self.stop.wait(TICK):
                return

    def sample(self, now):
        """One sample of the keeper's state now, saved; the disks if due."""
        rows = self.status().get("sites", [])
        sites = {r["name"]: ((self.memory(r["pid"])["pss_kib"] or 0) if r["pid"] else 0,
                             r["requests"], r["responses"]["5xx"]) for r in rows}
        try:
            available = self.available()
        except OSError:
            available = None
        self.history.add(now, sites, available)
        self.last = now
        try:
            self.history.save(self.path)
        except OSError as e:
            log.warning("history: not saved: %s", e)
        if self.facts is not None:
            self.facts.measure_disks(sites)
