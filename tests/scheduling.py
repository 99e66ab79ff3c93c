"""Several at once (pytest-xdist: `pytest -n 3 --dist loadgroup`): which tests go
together to one worker, and the longest groups first. Its hooks are conftest.py's."""

import pytest

#: Modules that change a thing of the machine, not of a host root, that another
#: of them reads: they run on one worker, one after the other.
MACHINE_GROUPS = {"test_system_apache.py": "etc-apache",   # /etc/apache2, and a copy of it
                  "test_tls.py": "etc-apache",
                  # adopt refuses while any getlino runs (test_adopt_getlino runs one)
                  "test_adopt.py": "adopt", "test_adopt_getlino.py": "adopt",
                  "test_adopt_getlino_noi.py": "adopt"}


#: The groups that take longest, first: a worker that is free takes the next group,
#: so the long ones must not come last.
LONGEST_FIRST = ("serving-keeper", "test_upgrade.py", "test_zygote.py", "test_moved_site.py",
                 "adopt", "test_backup.py", "serving-mod_wsgi", "test_nginx.py", "test_messages.py",
                 "test_lifecycle.py", "test_users.py",
                 "test_secrets.py", "test_bad_input.py")


def _group(item):
    if "server" in item.fixturenames:
        return f"serving-{item.callspec.params['server']}"
    return MACHINE_GROUPS.get(item.path.name, item.path.name)


def pytest_itemcollected(item):
    """Every test goes with its group to one worker: the tests that use the session's
    server under one process backend (a worker starts the server it needs), else
    its module's (module fixtures are made once), or a machine group."""
    item.add_marker(pytest.mark.xdist_group(_group(item)))


def pytest_configure(config):
    """xdist hands out the groups in the order of the tests (not by their number of
    tests: one test can take longer than a module of them)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The longest groups first (stable: pytest's order within a group)."""
    def rank(item):
        g = _group(item)
        return LONGEST_FIRST.index(g) if g in LONGEST_FIRST else len(LONGEST_FIRST)
    items[:] = sorted(items, key=rank)


def pytest_collection_finish(session):
    """Refuse to run two at once ungrouped: xdist marks a group in the test ids
    (pytest-xdist#1386: not under pytest 9.2)."""
    if getattr(session.config.option, "loadgroup", False):     # set in each worker
        ungrouped = [i.nodeid for i in session.items if "@" not in i.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and "
                                    f"{len(ungrouped) - 1} more): see pytest-xdist#1386")
