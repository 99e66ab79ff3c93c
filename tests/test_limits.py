"""[limits]: a fence around each site's worker (keeper/fence.py). A site whose view
takes memory without end is stopped at its limit; the other sites never notice."""

import json
import os
import time

import pytest
import requests

from hoststate import status, wait_for
from test_keeper import Load

pytestmark = pytest.mark.slow

#: A site's own URLs: a view that takes memory without end (a leak, a report that
#: loads everything), and one that answers at once.
HOG = '''
from django.http import HttpResponse
from django.urls import re_path
from lino.core.urls import urlpatterns

HELD = []


def hog(request):
    while True:
        HELD.append(b"x" * (32 << 20))


def alive(request):
    return HttpResponse("alive")


urlpatterns = [re_path(r"^(?:.*/)?hog/$", hog), re_path(r"^(?:.*/)?alive/$", alive),
               *urlpatterns]
'''


@pytest.fixture
def hog_site(host):
    """A Cosi site with a memory limit of its own (600 MiB) and the views above."""
    name = host.unique("hog")
    host("new", name, "--app", "cosi", "--memory", "600")
    project = host.root / name
    (project / "hog.py").write_text(HOG)
    os.chmod(project / "hog.py", 0o644)
    with (project / "settings.py").open("a") as f:        # its own part (below the marker)
        f.write(f'ROOT_URLCONF = "{name}.hog"\n')
    yield name
    host("rm", name, "--yes", "--no-archive")


def test_limits_show_and_set_a_sites_own(host, server, cosi_sites):
    name = cosi_sites["sqlite"]
    rows = {r["limit"]: r for r in json.loads(host("limits", name, "--json").stdout)}
    assert rows == {"memory": {"limit": "memory", "value": 1024, "own": False},
                    "cpu_weight": {"limit": "cpu_weight", "value": 100, "own": False},
                    "tasks": {"limit": "tasks", "value": 512, "own": False}}
    try:
        host("limits", name, "--tasks", "300", "--cpu-weight", "50")
        rows = {r["limit"]: r for r in json.loads(host("limits", name, "--json").stdout)}
        assert rows["tasks"] == {"limit": "tasks", "value": 300, "own": True}
        assert rows["cpu_weight"]["value"] == 50 and not rows["memory"]["own"]
    finally:
        host("limits", name, "--tasks", "0", "--cpu-weight", "0")
    assert not any(r["own"] for r in json.loads(host("limits", name, "--json").stdout))
    for args in (("nosuchsite",), (name, "--memory", "-1"), (name, "--cpu-weight", "20000")):
        p = host("limits", *args, check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_worker_over_its_memory_is_stopped_and_no_other_site_notices(
        host, kserver, cosi_sites, hog_site):
    name = hog_site
    others = [kserver.url(n) for n in cosi_sites.values()]
    r = requests.get(kserver.url(name, "alive/"), timeout=300)
    assert r.text == "alive", host("logs", name, "-n", "40").stdout
    row = status(host)[name]
    assert row["memory_limit_mib"] == 600
    cgroup = row["fence"].startswith("cgroup")
    print(f"\nlimits enforced by {row['fence']}")
    with Load(others, threads=3, limit=300) as load:
        hogged = requests.get(kserver.url(name, "hog/"), timeout=120)
        if cgroup:      # the kernel ends the worker: its request fails, then the keeper's 503
            assert hogged.status_code in (502, 503), hogged.status_code
            after = requests.get(kserver.url(name, "alive/"), timeout=60)
            assert after.status_code == 503 and after.headers["Retry-After"], after.status_code
            assert name in after.text and "Traceback" not in after.text
            row = status(host)[name]
            assert "over its memory limit (600 MiB" in row["last_failure"], row
            wait_for("the site to serve again", lambda: requests.get(
                kserver.url(name, "alive/"), timeout=60).status_code == 200, timeout=60, every=1)
        else:           # rlimits: the allocation fails inside the worker, which goes on
            assert hogged.status_code == 500
            assert requests.get(kserver.url(name, "alive/"), timeout=60).text == "alive"
        time.sleep(1)
    assert load.count > 20 and not load.failures, load.failures[:5]
    peak = status(host)[name]["memory_peak_kib"]
    assert peak and peak > 50 * 1024, peak
    if cgroup:
        assert peak <= 600 * 1024, peak
        log = (host.root / "logs" / "keeper.log").read_text()
        assert f"{name}: worker killed: over its memory limit" in log
