"""The keeper's zygotes: one per group of alike sites that has sites, and one per
data variant that ``keeper.variant_sites`` sites share (see :mod:`.zygotes`); which
one a site forks from; and the variants sites reported, kept across keeper restarts
(``run/keeper-variants.json``, root's only)."""

import collections
import json
import logging
import selectors
import time

from ..fs import atomic_write
from . import paths
from . import states as st
from .zygotes import Zygote

log = logging.getLogger("linohost.keeper")


class ZygotePool:
    """What the keeper knows of zygotes and data variants."""

    def __init__(self, keeper):
        self.keeper, self.host = keeper, keeper.host
        self.zygotes = {}               # (group key, variant digest or None) -> Zygote
        # What sites said of their data where it differs from their group's demo data
        # (see zygotes.py): site -> (group key, digest); (group key, digest) -> tables.
        self.variant_of = {}
        self.variant_tables = {}

    def keep(self):
        """One ready zygote per group that has sites (when zygotes are on), and one per
        variant that keeper.variant_sites sites share: start the missing, restart the
        stale, stop those without sites."""
        k = self.keeper
        wanted, counts = {}, collections.Counter()
        if k.use_zygotes:
            for name, slot in k.slots.items():
                if slot.group:
                    counts[(slot.group, None)] += 1
                    wanted.setdefault((slot.group, None), name)
            for name, (group, digest) in sorted(self.variant_of.items()):
                slot = k.slots.get(name)
                if slot and slot.group == group:
                    counts[(group, digest)] += 1
                    if k.variant_sites and counts[(group, digest)] >= k.variant_sites:
                        wanted.setdefault((group, digest), name)
        for key, z in self.zygotes.items():
            z.sites = counts[key]
        for key in list(self.zygotes):
            z = self.zygotes[key]
            z.poll()
            if key not in wanted or (z.state != st.Z_FAILED and z.stale()):
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
                z.on_close = k._unregister
        for key in wanted:
            if any(z.state == st.Z_STARTING for z in self.zygotes.values()):
                break                           # one at a time: a start takes a core
            z = self.zygotes[key]
            if z.state == st.Z_STOPPED or (z.state == st.Z_FAILED and now >= z.retry_at):
                z.start()
                if z.sock is not None:
                    k.sel.register(z.sock, selectors.EVENT_READ,
                                  lambda s, z=z: self._says(z))

    def _says(self, z):
        sock = z.sock
        z.readable()
        if z.state == st.Z_READY:              # its first word said; forks answer directly
            self.keeper._unregister(sock)

    def coming(self, slot):
        """Whether *slot*'s zygote (its variant's, or its group's) is still starting: its
        start can wait for a warm one."""
        if not self.keeper.use_zygotes:
            return False
        known = self.variant_of.get(slot.name)
        digest = known[1] if known and known[0] == slot.group else None
        z = self.zygotes.get((slot.group, digest)) or self.zygotes.get((slot.group, None))
        return z is not None and z.state == st.Z_STARTING

    def for_site(self, name, group, plain_reason=None, tried=()):
        """The ready zygote to fork *name* from: its variant's if it has one (else
        none once a zygote found that it differs), else its group's."""
        if not self.keeper.use_zygotes:
            return None
        known = self.variant_of.get(name)
        digest = known[1] if known and known[0] == group else None
        if digest is None and plain_reason:
            return None
        z = self.zygotes.get((group, digest))
        if z is None and digest and not plain_reason:
            z = self.zygotes.get((group, None))       # its variant's is not wanted (yet)
        if z is None or z.state != st.Z_READY or z.name in tried:
            return None
        return z

    def learn_variant(self, name, group, line):
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
        self.save_variants()

    def load_variants(self):
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

    def save_variants(self):
        data = {"sites": [[n, list(g), d] for n, (g, d) in sorted(self.variant_of.items())],
                "tables": [[list(g), d, t] for (g, d), t in self.variant_tables.items()]}
        try:
            atomic_write(paths.variants_file(self.host), json.dumps(data), mode=0o600)
        except OSError as e:
            log.warning("not keeping the sites' data variants: %s", e)

    def forget(self, name):
        """Site *name* is gone."""
        if self.variant_of.pop(name, None):
            self.save_variants()

    def stop_all(self):
        for z in self.zygotes.values():
            z.stop()
            z.remove_files()
