"""The keeper's bounded history (keeper/history.py): differences of the status rows'
counters, a keeper restart, the ring's wraparound, its file, and memory that does
not grow."""
import stat
import tracemalloc

from linohost.keeper.history import History


def test_requests_and_errors_are_the_differences_of_the_counters():
    h = History(size=8)
    h.add(100, {"a": (2048, 5, 1)}, 900_000)
    h.add(200, {"a": (0, 12, 1)}, 800_000)
    assert h.series("a", "requests") == [(100, 5), (200, 7)]
    assert h.series("a", "errors") == [(100, 1), (200, 0)]
    assert h.series("a", "pss_kib") == [(100, 2048), (200, 0)]
    assert h.total("a", "requests", since=150) == 7
    assert h.total("a", "requests", since=0) == 12
    assert h.series(None, "available_kib") == [(100, 900_000), (200, 800_000)]
    assert h.total(None, "requests", since=0) == 12


def test_a_counter_that_went_down_is_a_keeper_restart():
    h = History(size=8)
    h.add(100, {"a": (0, 50, 4)}, 0)
    h.add(200, {"a": (0, 3, 1)}, 0)         # the keeper restarted: 3 since then
    assert [v for _, v in h.series("a", "requests")] == [50, 3]
    assert [v for _, v in h.series("a", "errors")] == [4, 1]


def test_the_ring_keeps_the_last_samples_in_order():
    h = History(size=4)
    for n in range(1, 7):
        h.add(n * 10, {"a": (n, n, 0)}, n)
    assert h.series("a", "pss_kib") == [(30, 3), (40, 4), (50, 5), (60, 6)]
    assert h.total("a", "requests", since=0) == 4   # one request per sample, the first 6
    assert h.series(None, "pss_kib") == [(30, 3), (40, 4), (50, 5), (60, 6)]


def test_a_site_gone_is_dropped_and_a_new_one_starts_empty():
    h = History(size=4)
    h.add(10, {"a": (1, 1, 0), "b": (1, 1, 0)}, 0)
    h.add(20, {"a": (1, 2, 0), "c": (5, 9, 0)}, 0)
    assert set(h.sites) == {"a", "c"} and "b" not in h.last
    assert h.series("c", "requests") == [(10, 0), (20, 9)]
    assert h.series("b", "requests") == [] and h.total("b", "requests", 0) == 0


def test_the_file_keeps_the_day_across_a_restart(tmp_path):
    path = tmp_path / "keeper-history.json"
    h = History(size=4)
    for n in range(1, 6):
        h.add(n * 10, {"a": (n, 10 * n, n), "b": (0, 1, 0)}, 100 + n)
    h.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = History.load(path, size=4)
    for name, field in (("a", "requests"), ("a", "errors"), ("b", "pss_kib"),
                        (None, "available_kib"), (None, "requests")):
        assert again.series(name, field) == h.series(name, field)
    again.add(60, {"a": (0, 57, 5)}, 0)             # the counters seen last are kept
    assert again.series("a", "requests")[-1] == (60, 7)
    assert set(again.sites) == {"a"}                # b no longer exists
    assert History.load(path, size=8).series("a", "requests") == []     # another size
    path.write_text("{not json")
    assert History.load(path, size=4).sites == {}


def test_memory_does_not_grow_with_time():
    h = History(size=288)
    sites = {f"site{i}": (100_000, 0, 0) for i in range(50)}

    def day(start):
        for n in range(288):
            h.add(start + n, {k: (p, start + n, 0) for k, (p, _, _) in sites.items()}, 1)
    day(0)
    buffers = [r.buffer_info() for rings in h.sites.values() for r in rings.values()]
    tracemalloc.start()
    try:
        day(1000)
        before = tracemalloc.get_traced_memory()[0]
        day(2000)
        day(3000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [r.buffer_info() for rings in h.sites.values() for r in rings.values()] == buffers
    assert grown < 16 * 1024, grown
