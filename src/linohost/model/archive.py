"""The backup archive format: one tar.gz per site and time.

Members::

    manifest.json          site record, environment, packages, engine, time, checksums
    database/db.sqlite3    the database in its engine's native form (or db.pgdump, db.sql)
    portable/              Lino's portable dump (dump2py), restorable on any engine
    files/settings.py      the site's settings when it was backed up (its own part is
                           carried to a copy)
    files/lino.ini         its plugin settings, if it has them
    files/media/ files/config/

The manifest holds the SHA-256 of every other member; an archive whose members
do not match is refused as damaged.
"""

import datetime
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIX = ".tar.gz"
_NAME_RE = re.compile(r"^(?P<site>[a-z][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}(?:\d{6})?Z)\.tar\.gz$")


@dataclass
class Manifest:
    site: dict                 # the site's registry record
    env: str
    packages: list             # `pip freeze` of the environment
    engine: str
    created: str               # UTC, ISO 8601
    linohost: str
    native: str = ""           # member holding the native database dump
    portable: bool = False     # whether portable/ holds a dump2py dump
    checksums: dict = field(default_factory=dict)
    format: int = FORMAT

    def dumps(self):
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def loads(cls, text):
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown archive format {data.get('format')!r}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def file_name(site_name, when):
    """``SITE-20261125T101500123456Z.tar.gz`` for a UTC datetime *when*."""
    return f"{site_name}-{when:%Y%m%dT%H%M%S%fZ}{SUFFIX}"


def parse_name(name):
    """(site, UTC datetime) of an archive file name, or None."""
    m = _NAME_RE.match(Path(name).name)
    if not m:
        return None
    stamp = m.group("stamp")
    fmt = "%Y%m%dT%H%M%S%fZ" if len(stamp) > 16 else "%Y%m%dT%H%M%SZ"
    when = datetime.datetime.strptime(stamp, fmt).replace(tzinfo=datetime.timezone.utc)
    return m.group("site"), when


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def keep(archives, daily, weekly):
    """Which of one site's archives a retention policy keeps.

    *archives* are ``(when, path)``; the newest is always kept, then the newest of
    each of the last *daily* days and of the last *weekly* ISO weeks that have one.
    """
    newest_first = sorted(archives, reverse=True)
    kept = set(newest_first[:1])
    for count, bucket in ((daily, lambda w: w.date()), (weekly, lambda w: w.isocalendar()[:2])):
        seen = []
        for a in newest_first:
            b = bucket(a[0])
            if b not in seen:
                if len(seen) == count:
                    break
                seen.append(b)
                kept.add(a)
    return kept
