"""`linohost logs`: a site's worker log and its requests from the access log of
`linohost serve`, together in time order, and followed across worker restarts.

The worker log (``logs/sites/SITE.log``) is appended by every worker of the site;
its lines begin with ``[YYYY-MM-DD HH:MM:SS]``; lines without (Lino's own, a
traceback's) get the time of the line before. The access log (``logs/apache-access.log``, LogFormat
``linohost``: ``%h %t "%r" %>s %b %D "%{Host}i"``) holds every site's requests: a
site's are those under its URL prefix, or to one of its host names.
"""

import datetime
import os
import re
import time
from dataclasses import dataclass

from .errors import UsageError

_WORKER_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] ")
_ACCESS = re.compile(r'^\S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)[^"]*" '
                     r'(?P<status>\d{3}) \S+ (?P<us>\d+) "(?P<host>[^"]*)"')
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Entry:
    time: datetime.datetime     # local, naive (as the worker writes it)
    text: str


def since(text, now=None):
    """The time *text* names: ``10m``, ``2h``, ``1d`` ago, or an ISO date/time."""
    now = now or datetime.datetime.now()
    m = _SINCE.match(text.strip())
    if m:
        return now - datetime.timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    try:
        return datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration such as 10m, 2h, 1d, or a "
                         f"date and time such as 2026-12-05T06:30") from None


class SiteLogs:
    """What belongs to one site in the two logs."""

    def __init__(self, host, site):
        self.worker_log = host.logs_dir / "sites" / f"{site.name}.log"
        self.access_log = host.logs_dir / "apache-access.log"
        prefix = host.site_prefix(site)
        self.prefix = prefix if prefix != "/" else None
        self.hostnames = {n.lower() for n in host.site_hostnames(site)}

    def request(self, line):
        """The Entry of an access-log *line* of this site, else None."""
        m = _ACCESS.match(line)
        if not m:
            return None
        if self.prefix:
            if not (m["path"] + "/").startswith(self.prefix):
                return None
        elif m["host"].rsplit(":", 1)[0].lower() not in self.hostnames:
            return None
        try:
            t = datetime.datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            return None
        t = t.astimezone().replace(tzinfo=None)
        return Entry(t, f"[{t:%Y-%m-%d %H:%M:%S}] {m['method']} {m['path']} {m['status']} "
                        f"({int(m['us']) // 1000} ms)")

    def worker_entries(self, lines, last=None):
        """Entries of worker-log *lines*; *last* the time of the line before them."""
        out = []
        for line in lines:
            m = _WORKER_TIME.match(line)
            if m:
                last = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S")
            elif last is not None:              # Lino's own lines, a traceback's
                line = f"[{last:%Y-%m-%d %H:%M:%S}] {line}"
            if last is not None:
                out.append(Entry(last, line))
        return out, last


def _lines(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                yield line.rstrip("\n")
    except FileNotFoundError:
        return


def recent(host, site, lines=50, start=None):
    """The last *lines* entries of *site* (since *start*), in time order."""
    s = SiteLogs(host, site)
    worker, _ = s.worker_entries(_lines(s.worker_log))
    requests = (s.request(line) for line in _lines(s.access_log))
    both = [e for e in (*worker, *requests) if e and (start is None or e.time >= start)]
    both.sort(key=lambda e: e.time)                      # stable: each log's own order
    return both[-lines:] if lines else both


class _Tail:
    """New lines of a file, from where it ends now; from its start again when it was
    replaced or truncated (log rotation)."""

    def __init__(self, path):
        self.path, self.buf = path, ""
        try:
            st = os.stat(path)
            self.inode, self.pos = st.st_ino, st.st_size
        except FileNotFoundError:
            self.inode, self.pos = None, 0

    def read(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.pos:
            self.inode, self.pos, self.buf = st.st_ino, 0, ""
        if st.st_size == self.pos:
            return []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.pos)
            data = f.read()
            self.pos = f.tell()
        *whole, self.buf = (self.buf + data).split("\n")
        return whole


def follow(host, site, write, every=0.5, until=lambda: False):
    """Call *write* with each new entry of *site* as the logs grow, in time order
    within each look, until *until()* (or Ctrl-C)."""
    s = SiteLogs(host, site)
    worker, access = _Tail(s.worker_log), _Tail(s.access_log)
    last = None
    while not until():
        entries, last = s.worker_entries(worker.read(), last)
        entries += [e for e in map(s.request, access.read()) if e]
        for e in sorted(entries, key=lambda e: e.time):
            write(e.text)
        time.sleep(every)

