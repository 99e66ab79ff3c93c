"""The range of user and group ids that site users get (``site_ids = "FIRST-LAST"``).

Site users are not Debian's dynamic system users (``useradd --system`` takes ids from
100-999, shared with every package that adds a user: 885 sites used them up) nor
people's accounts: each gets the lowest id of this host's range that is free as a
user id and as a group id, the same number for both. The default, 70000-99999,
collides with none of the ranges below (Debian policy 9.2.2 and systemd's
UIDS-GIDS.md) nor with the subordinate ids that `useradd` hands out (from
SUB_UID_MIN, 100000) for user namespaces.
"""

import re

from ..errors import UsageError

DEFAULT = "70000-99999"

#: Ranges no site id may take, whatever the machine says: (first, last, whose).
RESERVED = (
    (0, 999, "system users (Debian policy 9.2.2: 0-99 static, 100-999 dynamic)"),
    (60000, 65535, "Debian's reserved ids and nobody (policy 9.2.2), systemd's homed, "
                   "userns and dynamic users (61184-65519)"),
    (524288, 1879048191, "systemd's container ranges"),
    (2147352576, 2147418111, "systemd's foreign UID range (OS images)"),
    (2147483648, 4294967295, "ids negative as signed 32-bit numbers (systemd: avoid)"),
)


def parse(text):
    """``"FIRST-LAST"`` -> (first, last); UsageError names the key otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) > int(m.group(2)):
        raise UsageError(f"site_ids must be FIRST-LAST with FIRST <= LAST, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def overlap(first, last, ranges):
    """The first of *ranges* ``(lo, hi, whose)`` that [first, last] overlaps, or None."""
    for lo, hi, whose in ranges:
        if first <= hi and lo <= last:
            return lo, hi, whose
    return None


def check(text, machine_ranges=()):
    """(first, last) of the configured range; UsageError (one line) if it overlaps a
    reserved range or one the machine uses (``(lo, hi, whose)``, e.g. /etc/subuid)."""
    first, last = parse(text)
    clash = overlap(first, last, (*RESERVED, *machine_ranges))
    if clash:
        lo, hi, whose = clash
        raise UsageError(f"site_ids {first}-{last} overlaps {lo}-{hi} ({whose}): choose a "
                         f"range outside it in linohost.toml (default {DEFAULT})")
    return first, last
