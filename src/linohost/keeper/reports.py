"""What workers say on their status pipes (the words of :mod:`.protocol`), heard by
the keeper: one handler per word, each updating the worker's slot."""

import logging
import os
import time

from . import paths, protocol
from . import states as st
from .slot import Done

log = logging.getLogger("linohost.keeper")


class Reports:
    """Reads the status pipes of the keeper's workers."""

    def __init__(self, keeper):
        self.keeper = keeper
        self.handlers = {protocol.READY: self.ready, protocol.STATS: self.stats,
                         protocol.DONE: self.done,
                         protocol.LIVE: self.live, protocol.NEXT_JOB: self.next_job,
                         protocol.NOT_EXACT: self.inexact, protocol.VARIANT: self.variant}

    def read(self, slot):
        """Read what *slot*'s worker said since the last time; at its end, close."""
        try:
            data = os.read(slot.status, 4096)
        except BlockingIOError:
            return
        if not data:
            self.close(slot)
            return
        slot.buffer += data
        *lines, slot.buffer = slot.buffer.split(b"\n")
        for line in lines:
            word, rest = protocol.heard(line)
            handler = self.handlers.get(word)
            try:
                if handler:
                    handler(slot, rest)
            except ValueError:
                log.warning("%s: worker said what the keeper cannot read: %r", slot.name, line)

    def read_to_end(self, slot):
        """What a worker that ended said before it left."""
        while slot.status is not None:
            before = slot.status
            self.read(slot)
            if slot.status == before:
                break
        self.close(slot)

    def close(self, slot):
        if slot.status is not None:
            self.keeper._unregister(slot.status)
            os.close(slot.status)
            slot.status = None

    # -- one handler per word -----------------------------------------------------------
    def ready(self, slot, rest):
        if slot.state != st.STARTING:
            return
        slot.ready_at, slot.ready_wall = time.monotonic(), time.time()
        slot.last_start_s = round(slot.ready_at - slot.started_mono, 3)
        if slot.for_jobs:
            slot.job_wakes += 1
        else:
            slot.cold_starts += 1
        slot.failures = 0
        slot.tried.clear()
        if slot.start_mode == "zygote":
            slot.plain_reason = None
        self.keeper._to(slot, st.RUNNING)
        self.keeper.admission.ready(slot)
        log.info("%s: worker %d ready in %.2f s", slot.name, slot.proc.pid, slot.last_start_s)

    def stats(self, slot, rest):
        requests, last = rest.split()
        slot.requests = int(requests)
        if float(last):
            slot.last_request = float(last)

    def done(self, slot, rest):
        slot.done = Done.heard(rest)

    def live(self, slot, rest):
        websockets, messages = rest.split()
        slot.websockets, slot.messages = int(websockets), int(messages)
        # Its worker serves the websockets now: those waiting at the porch go to it.
        self.keeper.porch.hand_over(slot.name, paths.ws_socket(self.keeper.host, slot.name))

    def next_job(self, slot, rest):
        next_job = None if rest == "-" else float(rest)
        changed = (next_job, True) != (slot.next_job, slot.jobs_known)
        slot.next_job, slot.jobs_known = next_job, True
        if changed:
            self.keeper.wakeups.save()

    def inexact(self, slot, rest):
        slot.plain_reason = rest

    def variant(self, slot, rest):
        self.keeper.pool.learn_variant(slot.name, slot.group, rest)
