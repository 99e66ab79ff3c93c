"""The range of site user ids (`site_ids`): parsed, and refused where it overlaps a
range that is not linohost's (no processes, no users made)."""

import pytest

from linohost.apply.users import machine_ranges
from linohost.errors import UsageError
from linohost.model import siteids


def test_the_default_overlaps_nothing_reserved_nor_this_machines_ranges():
    assert siteids.check(siteids.DEFAULT, machine_ranges()) == (70000, 99999)


@pytest.mark.parametrize("text,words", [
    ("500-600", ["0-999", "system users"]),
    ("65000-70000", ["60000-65535", "nobody"]),
    ("600000-600010", ["524288-1879048191", "container"]),
    ("2147400000-2147400001", ["2147352576-2147418111", "foreign"]),
    ("3000000000-3000000001", ["signed"]),
    ("90-80", ["FIRST <= LAST"]),
    ("x-1", ["FIRST-LAST"]),
])
def test_ranges_that_are_not_linohosts_are_refused(text, words):
    with pytest.raises(UsageError) as e:
        siteids.check(text)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_machines_people_and_subordinate_ids_are_refused(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# a comment\nUID_MIN\t\t 1000\nUID_MAX\t\t 80000\nSUB_UID_MIN 100000\n"
                    "SUB_UID_MAX 600100000\nSUB_UID_COUNT 65536\nPASS_MAX_DAYS 99999\n")
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:70100:65536\n")
    ranges = machine_ranges(defs, (subuid,))
    assert (1000, 80000) in [r[:2] for r in ranges]
    with pytest.raises(UsageError, match="people's accounts"):
        siteids.check("79000-79999", ranges)
    with pytest.raises(UsageError, match="alice"):
        siteids.check("90000-99999", machine_ranges(tmp_path / "none", (subuid,)))
    with pytest.raises(UsageError, match="SUB_UID_MIN"):
        siteids.check("150000-150010", ranges)
    assert siteids.check("90000-99999", machine_ranges(tmp_path / "none", ())) == (90000, 99999)
