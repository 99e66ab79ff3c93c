"""A bounded history of each site and of the host, for the status page's plots and
its "last hour / last day" counts: no database, a ring of :data:`SIZE` samples (one
day at ``keeper.history_interval`` = 300 s) in preallocated arrays, so its memory
does not grow with time.

One sample holds, per site, its worker's PSS (0 asleep) and the requests and 5xx
answers since the previous sample (the difference of the cumulative counters of the
keeper's status rows; a counter that went down means the keeper restarted, and its
new value is the difference); for the host, the workers' PSS, the requests and the
available memory. Every ring shares one cursor and one array of sample times.
Persisted as JSON (``run/keeper-history.json``) so that a restart keeps the day.
"""
import bisect
import json
import threading
from array import array

from ..fs import atomic_write

SIZE = 288
SITE_FIELDS = ("pss_kib", "requests", "errors")
HOST_FIELDS = ("pss_kib", "requests", "available_kib")


def _ring(size, values=None):
    """A fixed array of *size* integers (from *values* if given)."""
    return array("q", values if values is not None else bytes(8 * size))


class History:
    """The rings of the host and of each site."""

    def __init__(self, size=SIZE):
        self.size, self.cursor = size, 0
        self.times = array("d", bytes(8 * size))   # epoch of each sample (0: none yet)
        self.host = {f: _ring(size) for f in HOST_FIELDS}
        self.sites = {}                             # name -> {field: ring}
        self.last = {}                              # name -> [requests, errors] seen last
        self.lock = threading.Lock()

    def add(self, when, sites, available_kib):
        """One sample at *when* (epoch): *sites* is {name: (pss KiB, requests, 5xx)},
        the last two cumulative as in the status rows; a site not in it is dropped."""
        with self.lock:
            i = self.cursor
            self.times[i] = when
            for name in set(self.sites) - set(sites):
                del self.sites[name]
                self.last.pop(name, None)
            totals = dict.fromkeys(HOST_FIELDS, 0)
            for name, (pss, *counters) in sites.items():
                rings = self.sites.get(name)
                if rings is None:
                    rings = self.sites[name] = {f: _ring(self.size) for f in SITE_FIELDS}
                before = self.last.get(name, [0, 0])
                deltas = [now - was if now >= was else now for now, was in zip(counters, before)]
                self.last[name] = list(counters)
                for field, value in zip(SITE_FIELDS, (pss or 0, *deltas)):
                    rings[field][i] = value
                totals["pss_kib"] += pss or 0
                totals["requests"] += deltas[0]
            totals["available_kib"] = available_kib or 0
            for field, value in totals.items():
                self.host[field][i] = value
            self.cursor = (i + 1) % self.size

    def ordered(self, name):
        """(times, {field: values}) of site *name* (None: the host), oldest first, of
        the samples taken so far (none of a site it does not hold)."""
        with self.lock:
            rings = self.host if name is None else self.sites.get(name)
            if rings is None:
                return [], {}
            c = self.cursor
            times = self.times[c:] + self.times[:c]
            skip = bisect.bisect_right(times, 0.0)      # not yet taken: the oldest
            return (times[skip:].tolist(),
                    {f: (r[c:] + r[:c])[skip:].tolist() for f, r in rings.items()})

    def series(self, name, field):
        """[(epoch, value)] of *field* of site *name* (None: the host), oldest first."""
        times, values = self.ordered(name)
        return list(zip(times, values.get(field, ())))

    def total(self, name, field, since):
        """The sum of *field* of site *name* (None: the host) in samples after *since*."""
        times, values = self.ordered(name)
        return sum(values.get(field, ())[bisect.bisect_right(times, since):])

    # -- persistence ---------------------------------------------------------------------
    def dumps(self):
        with self.lock:
            return json.dumps({
                "size": self.size, "cursor": self.cursor, "times": self.times.tolist(),
                "host": {f: r.tolist() for f, r in self.host.items()},
                "sites": {n: {**{f: r.tolist() for f, r in rings.items()},
                              "last": self.last.get(n, [0, 0])}
                          for n, rings in self.sites.items()}})

    def save(self, path):
        """Write the rings to *path* (root's only), atomically."""
        atomic_write(path, self.dumps(), mode=0o600)

    @classmethod
    def load(cls, path, size=SIZE):
        """The history kept at *path*; an empty one if there is none, it is unreadable
        or of another size."""
        history = cls(size)
        try:
            data = json.loads(path.read_text())
            if data["size"] != size:
                return history
            history.cursor = int(data["cursor"]) % size
            history.times = array("d", data["times"])
            history.host = {f: _ring(size, data["host"][f]) for f in HOST_FIELDS}
            for name, rings in data["sites"].items():
                history.sites[name] = {f: _ring(size, rings[f]) for f in SITE_FIELDS}
                history.last[name] = [int(v) for v in rings["last"]]
        except (OSError, ValueError, KeyError, TypeError):
            return cls(size)
        if len(history.times) != size or any(
                len(r) != size for rings in (history.host, *history.sites.values())
                for r in rings.values()):
            return cls(size)
        return history
