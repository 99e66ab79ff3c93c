"""What the keeper holds for one site: its socket, its state (:mod:`.states`), its
worker, and what the worker said (requests, websockets, next background task)."""

import time

from . import states as st
from .protocol import LATENCY_BUCKETS

RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Done:
    """Requests that ended (protocol.DONE): counts by class, latency buckets, seconds."""

    def __init__(self, classes=None, buckets=None, seconds=0.0):
        self.classes = classes or [0] * len(RESPONSE_CLASSES)
        self.buckets = buckets or [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = seconds

    @classmethod
    def heard(cls, rest):
        """From the words after ``done`` (ValueError when they are not that)."""
        words = rest.split()
        n = len(RESPONSE_CLASSES)
        if len(words) != n + 1 + len(LATENCY_BUCKETS) + 1:
            raise ValueError(rest)
        return cls([int(w) for w in words[:n]], [int(w) for w in words[n + 1:]],
                   float(words[n]))

    def __add__(self, other):
        return Done([a + b for a, b in zip(self.classes, other.classes)],
                    [a + b for a, b in zip(self.buckets, other.buckets)],
                    self.seconds + other.seconds)

    def latency(self):
        """{"le": cumulative counts by upper bound (seconds; "+Inf" last), "sum": s}."""
        bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
        running, cumulative = 0, {}
        for bound, n in zip(bounds, self.buckets):
            running += n
            cumulative[bound] = running
        return {"le": cumulative, "sum": round(self.seconds, 3)}


class Slot:
    """What the keeper holds for one site."""

    def __init__(self, name, sock, fingerprint):
        self.name, self.sock, self.fingerprint = name, sock, fingerprint
        self.state = st.SLEEPING
        self.proc = self.status = None
        self.started = self.started_mono = self.ready_at = None
        self.requests_before = self.requests = 0
        # Requests ended: [1xx..5xx answers, then latency buckets], seconds in all
        # (protocol.DONE), of the workers that left and of the one now.
        self.done_before, self.done = Done(), Done()
        self.last_request = None
        # Live features (sites with channels): open websockets, channel messages handled.
        self.websockets = None
        self.messages_before = self.messages = 0
        self.cold_starts = self.failures = 0
        self.failed_starts = 0          # starts that failed, since the keeper started
        self.last_failure = None
        self.last_start_s = None
        self.retry_at = 0.0
        self.ready_wall = None          # when its worker became ready (epoch)
        self.cost_kib = None            # what its worker held then (USS)
        self.refused = 0                # requests answered 503 for want of memory
        self.limits = None              # the fence of its last worker (fence.Limits)
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
        done = self.done_before + self.done
        return {
            "name": self.name, "state": self.state,
            "pid": self.proc.pid if self.proc else None,
            "uptime_s": round(now - self.started, 1) if self.proc and self.started else None,
            "requests": self.requests_before + self.requests,
            "last_request": (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.last_request))
                             if self.last_request else None),
            "cold_starts": self.cold_starts,
            "last_start_s": self.last_start_s,
            "last_start": (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.ready_wall))
                           if self.ready_wall else None),
            "failed_starts": self.failed_starts,
            "start": self.start_mode,
            "plain_reason": self.plain_reason,
            "zygote": self.zygote,
            "last_failure": self.last_failure,
            "retry_in_s": (round(max(0.0, self.retry_at - time.monotonic()), 1)
                           if self.state == st.FAILED else None),
            "next_job": (time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.next_job))
                         if self.next_job is not None and self.jobs_known else None),
            "job_wakes": self.job_wakes,
            "refused": self.refused,
            "responses": dict(zip(RESPONSE_CLASSES, done.classes)),
            "latency": done.latency(),
            "memory_limit_mib": self.limits.memory_mib if self.limits else None,
            "websockets": self.websockets,
            "channel_messages": (self.messages_before + self.messages
                                 if self.websockets is not None else None),
        }
