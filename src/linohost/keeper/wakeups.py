"""Sleeping sites woken for their background tasks (Lino's scheduled system tasks),
and the schedules their workers reported, kept across keeper restarts (schedules.py)."""

import time

from . import schedules
from . import states as st


class Wakeups:
    """When the keeper wakes a sleeping site for its tasks, not for a request."""

    def __init__(self, keeper):
        self.keeper = keeper

    def tick(self):
        """Start sleeping sites whose next job has come, at most keeper.job_wakeups at
        a time: first every site no worker told us about yet (once after the keeper
        starts, after `linohost manage`), then the others no sooner than
        keeper.min_job_interval seconds after their last worker left; none under
        maintenance."""
        k = self.keeper
        if not k.jobs:
            return
        free = k.job_wakeups - sum(1 for s in k.slots.values() if s.for_jobs)
        if free <= 0:
            return
        now, mono = time.time(), time.monotonic()
        due = []
        for slot in k.slots.values():
            if slot.state != st.SLEEPING or slot.removed or k.pool.coming(slot):
                continue
            rested = slot.left_at is None or mono - slot.left_at >= k.min_job_interval
            if not slot.jobs_known and (slot.left_at is None or rested):
                due.append((0, slot.name, slot))
            elif slot.jobs_known and slot.next_job is not None and slot.next_job <= now \
                    and rested:
                due.append((slot.next_job, slot.name, slot))
        # (a site under maintenance is being restored, adopted or upgraded: not now)
        due = [d for d in sorted(due) if not k.host.under_maintenance(d[1])]
        for _, _, slot in due[:free]:
            mode = "zygote" if k.pool.for_site(slot.name, slot.group, slot.plain_reason,
                                            slot.tried) else "plain"
            if not k.admission.fits(mode):       # requests first; no worker let go
                return
            k.start(slot, for_jobs=True)

    def load(self):
        """The task schedules workers reported before the keeper (re)started: only the
        sites whose task is due, or whose schedule is unknown, are woken for tasks."""
        slots = self.keeper.slots
        for name, next_job in schedules.load(self.keeper.host, set(slots)).items():
            slots[name].next_job, slots[name].jobs_known = next_job, True

    def save(self):
        """Keep what the workers told of their schedules (a worker said next_job)."""
        schedules.save(self.keeper.host, {n: s.next_job for n, s in self.keeper.slots.items()
                                          if s.jobs_known and not s.removed})
