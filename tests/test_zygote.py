"""Warm starts: a worker forked from its group's zygote is exactly its site.

For each app of the test environment (Cosi, Noi) and each front end, a site on its
own host name, one on PostgreSQL, an empty one and one with settings of its own, the
same site is probed twice (tests/zygote_probe.py): in a worker forked from a zygote of
its group and in a worker started plainly. Both dump every Django setting (secrets
as hashes), the Site's and its plugins' attributes, and their answers to the same
requests in one signed-in session (pages, the JSON API of several tables, the
user's settings: the front end's site data), and the site caches they build; the
test compares them after masking tokens and times. Also: the worker holds nothing
of its zygote (descriptors, threads), writes only into the projects probed, and a site
whose settings differ from its group is found out and started plainly.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hoststate import site_pids, status, wait_for, wait_zygotes_ready
from runner import host_config
from test_keeper import keeper_pid

slow = pytest.mark.slow
HERE = Path(__file__).parent
TABLES = {"std": ["contacts/Persons", "contacts/Companies", "countries/Countries"],
          "cosi": ["contacts/Persons", "products/Products", "trading/InvoicesByJournal"],
          "noi": ["contacts/Persons", "tickets/AllTickets", "working/Sessions"]}
MASKS = [
    (re.compile(r"(csrftoken|sessionid)=[^;\s\"']+"), r"\1=<token>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:?\d\d|Z)?"), "<time>"),
    (re.compile(r"\b\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"), "<time>"),
    (re.compile(r"\b\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\b"), "<time>"),
    (re.compile(r'"content-length", "\d+"'), '"content-length", "<n>"'),
    (re.compile(r"datetime\.datetime\([\d, ]+\)"), "<time>"),
    (re.compile(r"\b1\d{9}(\.\d+)?\b"), "<epoch>"),
    (re.compile(r"\bpid \d+\b"), "pid <n>"),
]

#: A site's own settings (below its marker line) that change only what a forked
#: worker re-derives: it still starts warm, and exactly.
OWN_REDERIVED = ('SITE.title = "A title of its own"\n'
                 'ALLOWED_HOSTS = [*ALLOWED_HOSTS, "intranet.example.test"]\n')

GENERATED_NAME = re.compile(r"(?<=[A-Za-z_])\d+\b")


#: The demo sites probed besides the session's (app, front end): each app of the
#: session's environment, each front end (Cosi under both, one of them with settings
#: of its own below).
PROBED = (("cosi", "extjs"), ("noi", "react"))


@pytest.fixture(scope="module")
def probe_sites(host, cosi_sites, domain_sites):
    """{name: (app, host name)}: Cosi (ExtJS) and Noi (React) demo sites, the PostgreSQL
    Cosi site (ExtJS), a Cosi site on its own host name (React), an empty Cosi site, and
    a Cosi site (React) with settings of its own that a worker re-derives."""
    sites = {}
    for app, front_end in PROBED:
        name = host.unique(f"z{app}{front_end[0]}")
        host("new", name, "--app", app, "--front-end", front_end, timeout=1800)
        sites[name] = (app, "localhost")
    sites[cosi_sites["postgresql"]] = ("cosi", "localhost")
    name, domain = next(iter(domain_sites.items()))
    sites[name] = ("cosi", domain)
    name = host.unique("zempty")                # no journals: not the demo data
    host("new", name, "--app", "cosi", "--empty", "--front-end", "extjs")
    sites[name] = ("cosi", "localhost")
    name = host.unique("zown")                  # settings of its own a worker re-derives
    host("new", name, "--app", "cosi", "--front-end", "react")
    with (host.root / name / "settings.py").open("a") as f:
        f.write(OWN_REDERIVED)
    sites[name] = ("cosi", "localhost")
    yield sites
    for name in sites:
        if name.startswith("z"):
            host("rm", name, "--yes", "--no-archive", check=False)


def requests_for(host, name, app):
    from linohost.model.host import Host
    h = Host.open(host.root)
    site = h.site(name)
    prefix = h.site_prefix(site)
    out = [["GET", prefix, None],
           ["POST", prefix + "api/about/About/-99998",
            {"an": "sign_in", "username": "robin", "password": "1234"}]]
    if site.front_end == "react":               # the front end's data of the user
        out.append(["GET", prefix + "user/settings/", None])
    out += [["GET", f"{prefix}api/{t}?fmt=json&limit=10", None] for t in TABLES[app]]
    out += [["GET", prefix + "nonexistent/", None]]
    return out


def mask(text):
    for pattern, word in MASKS:
        text = pattern.sub(word, text)
    return text


def cache_files(root):
    """{relative path: sha256 of its masked lines} of a site cache (media/cache). The
    lines sorted, and the serial numbers of generated JS variables (``journal132``)
    masked: Lino writes some definitions in an order that follows object addresses,
    which no two processes share (two plain starts differ there too)."""
    def lines(p):
        text = GENERATED_NAME.sub("#", mask(p.read_text(errors="replace")))
        return "\n".join(sorted(text.splitlines()))
    return {str(p.relative_to(root)): hashlib.sha256(lines(p).encode()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tree(root, skip):
    """{path: (mtime, size)} of the files under *root* outside the *skip* paths."""
    out = {}
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip) or not p.is_file():
            continue
        st = p.stat()
        out[str(p)] = (st.st_mtime_ns, st.st_size)
    return out


def probe(host, name, app, domain):
    """Run both probes of *name*; (report, forked dump, plain dump, caches)."""
    # Not under pytest's tmp_path (mode 700): the site users write there.
    tmp = Path(tempfile.mkdtemp(prefix=f"probe-{name}-", dir="/tmp"))
    try:
        return _probe(host, name, app, domain, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _probe(host, name, app, domain, tmp):
    project = host.root / name
    cache = project / "media" / "cache"
    kept = project / "media" / "cache.kept"
    had_cache = cache.exists()
    if had_cache:
        shutil.move(cache, kept)               # each worker builds the site cache anew
    # Building it touches lino_version.txt, whose time the front ends compare with the
    # cache's: put back with the old cache, it must say the old time (else React
    # finds a version mismatch at every page and reloads for ever).
    version = project / "lino_version.txt"
    stamp = version.stat() if version.exists() else None
    tmp.chmod(0o1777)
    forked_cache = project / "media" / "cache.forked"
    spec = {"requests": requests_for(host, name, app), "host": domain,
            "fork_out": str(tmp / "fork.json"), "plain_out": str(tmp / "plain.json"),
            "forked_cache": str(forked_cache), "fork_again": str(tmp / "again.json")}
    try:
        p = subprocess.run([sys.executable, str(HERE / "zygote_probe.py"), str(host.root),
                            name, json.dumps(spec)], capture_output=True, text=True,
                           timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        report = json.loads(p.stdout)
        assert report["zygote"] == "ready", report
        assert report["plain"]["code"] == 0, report
        assert report["fork"]["code"] == 0 and report["fork"]["status"] == ["forked"], report
        caches = {"forked": cache_files(forked_cache), "plain": cache_files(cache)}
    finally:
        for built in (cache, forked_cache):
            shutil.rmtree(built, ignore_errors=True)
        if had_cache:
            shutil.move(kept, cache)
        if stamp:
            os.utime(version, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        else:
            version.unlink(missing_ok=True)
    forked = json.loads((tmp / "fork.json").read_text())
    plain = json.loads((tmp / "plain.json").read_text())
    forked["again"] = json.loads((tmp / "again.json").read_text())
    return report, forked, plain, caches


def compare(forked, plain):
    """The differences between two dumps, after masking: [(key, forked, plain)]."""
    out = []
    for section in ("settings", "site"):
        for k in sorted(set(forked[section]) | set(plain[section])):
            a, b = (mask(str(d[section].get(k))) for d in (forked, plain))
            if a != b:
                out.append((f"{section}.{k}", a[:300], b[:300]))
    for label in sorted(set(forked["plugins"]) | set(plain["plugins"])):
        fa, pa = forked["plugins"].get(label, {}), plain["plugins"].get(label, {})
        for k in sorted(set(fa) | set(pa)):
            if mask(str(fa.get(k))) != mask(str(pa.get(k))):
                out.append((f"plugin.{label}.{k}", str(fa.get(k))[:300], str(pa.get(k))[:300]))
    for a, b in zip(forked["answers"], plain["answers"], strict=True):
        for part in ("status", "headers", "body"):
            if mask(json.dumps(a[part])) != mask(json.dumps(b[part])):
                out.append((f"answer {a['request']} {part}", mask(json.dumps(a[part]))[:300],
                            mask(json.dumps(b[part]))[:300]))
    return out


@slow
@pytest.mark.timeout(2400)                # six sites probed twice each
def test_a_forked_worker_is_exactly_its_site(host, probe_sites):
    """Each site forked is exact: from its group's zygote, or where its data differ from
    the demo data in what Lino's start-up reads (an empty site has no journals), from a
    zygote of its own data variant."""
    seen, found_out, signed_in, cached = set(), set(), set(), set()
    # Two sites at a time (a probe keeps one core busy); meanwhile nothing is written
    # outside the probed sites' projects (and logs).
    skip = [*(host.root / n for n in probe_sites),
            host.root / "logs", host.root / "run", host.root / "home"]
    before = tree(host.root, skip)
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(probe_sites, pool.map(lambda item: probe(host, item[0], *item[1]),
                                                 probe_sites.items())))
    after = tree(host.root, skip)
    writes = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not writes, f"written outside the probed projects: {sorted(writes)[:5]}"
    for name, (report, forked, plain, caches) in results.items():
        app = probe_sites[name][0]
        if report.get("variant"):               # forked from a zygote of its own data
            reason = report["demo_fork"]["status"][-1]
            assert reason.startswith("inexact its database differs"), report
            found_out.add(name)
        differences = compare(forked, plain)
        assert not differences, f"{name} ({app}): forked != plain:\n" + "\n".join(
            f"  {k}\n    forked: {a}\n    plain:  {b}" for k, a, b in differences)
        # Something was compared: the session signed in and the tables answered.
        answers = {tuple(a["request"]): a for a in forked["answers"]}
        statuses = [a["status"] for a in forked["answers"]]
        assert statuses[0].startswith("200") and statuses[-1].startswith("404"), statuses
        sign_in = next(a for r, a in answers.items() if r[0] == "POST")
        if '"success": true' in sign_in["body"]:       # (not every app has this sign-in)
            signed_in.add(app)
            assert all(s.startswith("200") for s in statuses[2:-1]), (name, statuses)
        if caches["plain"]:                                 # a site cache was built
            cached.add(app)
        assert forked["settings"]["SECRET_KEY"] == plain["settings"]["SECRET_KEY"]
        assert forked["uid"] == plain["uid"] != 0
        # Nothing of the zygote in the worker: no descriptor of it (only /dev/null in
        # their place), no thread but its own.
        theirs = {t for n, t in report["zygote_fds"].items() if int(n) > 2}
        assert not theirs & set(forked["fds"].values()), (theirs, forked["fds"])
        assert forked["threads"] == 1 and report["zygote_threads"] == 1
        # Its own random state (two workers of one zygote differ), the signal handlers
        # and log streams of a plain start (the site's log, not the zygote's).
        assert forked["random"] != forked["again"]["random"]
        assert forked["signals"] == plain["signals"]
        assert forked["log_streams"] == plain["log_streams"], (forked["log_streams"],
                                                               plain["log_streams"])
        assert caches["forked"] == caches["plain"], (name, caches)
        seen.add(app)
    assert seen == {"cosi", "noi"}
    # The empty site's rows differ from the demo data's: forked exactly from a zygote of
    # its own data (so may the PostgreSQL site be, if its rows differ from SQLite's).
    empty = next(n for n in probe_sites if n.startswith("zempty"))
    assert empty in found_out, found_out
    assert signed_in == cached == {"cosi", "noi"}, (signed_in, cached)
    own = next(n for n in probe_sites if n.startswith("zown"))
    assert not results[own][0].get("variant"), results[own][0]        # forked warm
    assert "A title of its own" in str(results[own][1]["site"].get("title")), results[own][1]["site"]


@slow
def test_a_site_whose_settings_differ_from_its_group_starts_plainly(host, cosi_sites, server):
    """Its own settings (below the marker) change an attribute Lino reads at start-up:
    found out, it starts plainly,
    says why in `status`, answers; fixing the settings brings the warm start back."""
    if server.backend != "keeper":
        pytest.skip("zygotes are the keeper's")
    name = cosi_sites["sqlite"]
    wait_zygotes_ready(host)
    settings = host.root / name / "settings.py"
    original = settings.read_text()
    settings.write_text(original + "SITE.is_demo_site = False\n")    # its own part
    try:
        status = _served_by(host, server, name, "plain")
        assert "is_demo_site" in status["plain_reason"], status
    finally:
        settings.write_text(original)
    status = _served_by(host, server, name, "zygote")
    assert not status["plain_reason"], status


@slow
def test_sites_alike_in_their_own_data_share_a_zygote_of_it(host, cosi_sites, server):
    """Two sites whose rows in what Lino's start-up reads are alike but not the demo
    data's (an empty site and its clone: no journals) start plainly once, then a zygote
    of their data variant starts, and they start warm from it; it goes with them."""
    if server.backend != "keeper":
        pytest.skip("zygotes are the keeper's")
    import requests
    from linohost.keeper import control
    from linohost.model.host import Host
    wait_zygotes_ready(host)
    a, b = host.unique("zva"), host.unique("zvb")
    host("new", a, "--app", "cosi", "--empty", "--front-end", "extjs")
    try:
        host("clone", a, b)
        for name in (a, b):        # (their group's zygote told the keeper their variant)
            assert requests.get(server.url(name), timeout=300).status_code == 200

        def variant():
            return _variant(host)
        wait_for("a zygote of their variant", lambda: (variant() or {}).get("state") == "ready",
                 timeout=300)
        z = variant()
        assert z["sites"] == 2 and z["db"] == "sqlite" and z["front_end"] == "extjs", z
        h = Host.open(host.root)
        for name in (a, b):
            control.call(h, "restart", site=name)
            row = _served_by(host, server, name, "zygote")
            assert row["zygote"] == z["name"] and not row["plain_reason"], row
        kept = host.root / "run" / "keeper-variants.json"       # their rows: root's only
        assert kept.stat().st_mode & 0o777 == 0o600 and kept.stat().st_uid == 0
        # A keeper that starts again (the old one killed) knows their variant: its
        # zygote starts before either site is asked, and each starts from it at once.
        old = keeper_pid(server)
        os.kill(old, signal.SIGKILL)
        wait_for("a new keeper", lambda: keeper_pid(server) not in (None, old), timeout=120)
        wait_for("their variant's zygote again",
                 lambda: (variant() or {}).get("state") == "ready", timeout=300)
        z = variant()
        assert z["sites"] == 2, z
        for name in (a, b):
            row = _served_by(host, server, name, "zygote")
            assert row["zygote"] == z["name"] and row["cold_starts"] == 1, row
    finally:
        for name in (a, b):
            host("rm", name, "--yes", "--no-archive", check=False)
    wait_for("their variant's zygote gone", lambda: variant() is None)


def _variant(host):
    """The status row of a data variant's zygote, or None."""
    rows = json.loads(host("status", "--zygotes", "--json").stdout)
    return next((r for r in rows if r["variant"]), None)


@slow
def test_a_variant_whose_rows_point_at_content_types_starts(host, server):
    """Demo sites whose excerpt types differ from the demo data's (as sites made on
    another day do) form a data variant; its zygote's template keeps the content
    types those rows point at (Lino makes the excerpt types' actions from them at
    start-up), so it starts, and the sites start warm from it."""
    if server.backend != "keeper":
        pytest.skip("zygotes are the keeper's")
    import requests
    from linohost.keeper import control
    from linohost.model.host import Host
    wait_zygotes_ready(host)
    a, b = host.unique("zxa"), host.unique("zxb")
    host("new", a, "--app", "cosi", "--front-end", "extjs")
    try:
        host("manage", a, "--", "shell", "-c", "from lino.api import rt; "
             "rt.models.excerpts.ExcerptType.objects.filter(pk=1).update(name='Changed')")
        host("clone", a, b)
        for name in (a, b):
            assert requests.get(server.url(name), timeout=300).status_code == 200
        wait_for("a zygote of their variant, started or failed",
                 lambda: (_variant(host) or {}).get("state") in ("ready", "failed"),
                 timeout=300)
        z = _variant(host)
        assert z["state"] == "ready", (z, (host.root / "logs" / "zygotes.log").read_text()[-3000:])
        control.call(Host.open(host.root), "restart", site=a)
        row = _served_by(host, server, a, "zygote")
        assert row["zygote"] == z["name"] and not row["plain_reason"], row
    finally:
        for name in (a, b):
            host("rm", name, "--yes", "--no-archive", check=False)


def _served_by(host, server, name, start):
    """Ask *name* until a worker started the *start* way answers; its status row."""
    import requests

    def served():
        r = requests.get(server.url(name), timeout=300)
        row = status(host)[name]
        # a worker that started plainly before the keeper saw the change has no reason
        return (r.status_code == 200 and row["pid"] and row["start"] == start
                and (start != "plain" or row["plain_reason"])) and row
    return wait_for(f"{name} started {start}", served, timeout=120, every=1,
                    detail=lambda: status(host)[name])


@slow
def test_a_sleeping_site_answers_warm_and_shares_the_zygote_memory(host, cosi_sites, server):
    if server.backend != "keeper":
        pytest.skip("zygotes are the keeper's")
    import requests
    from linohost.keeper import control
    from linohost.model.host import Host
    name = cosi_sites["sqlite"]
    wait_zygotes_ready(host)
    control.call(Host.open(host.root), "restart", site=name)     # its worker leaves
    wait_for(f"{name} to sleep", lambda: not site_pids(host).get(name), timeout=60, every=0.5)
    t0 = time.monotonic()
    r = requests.get(server.url(name), timeout=300)
    took = time.monotonic() - t0
    assert r.status_code == 200
    row = next(r for r in json.loads(host("status", "--json").stdout) if r["name"] == name)
    assert row["start"] == "zygote", row
    # Warm: well under a plain start (seconds); generous for a loaded CI machine.
    assert took < 2.5, took
    assert row["pss_kib"] < row["rss_kib"] / 1.5, row     # most of it shared


@slow
def test_a_killed_zygote_is_replaced_and_its_sites_still_answer(host, cosi_sites, server):
    if server.backend != "keeper":
        pytest.skip("zygotes are the keeper's")
    import os
    import signal

    import requests
    name = cosi_sites["postgresql"]

    def zygote():
        rows = json.loads(host("status", "--zygotes", "--json").stdout)
        return next((r for r in rows if r["app"] == "lino_cosi.lib.cosi.settings"
                     and r["db"] == "postgresql" and r["front_end"] == "extjs"
                     and not r["variant"]), None)

    wait_for("the zygote", lambda: (zygote() or {}).get("state") == "ready", timeout=300,
             every=1, detail=zygote)
    old = zygote()["pid"]
    os.kill(old, signal.SIGKILL)
    with host_config(host, **{"keeper.idle_timeout": 1}):
        time.sleep(3)                                       # the site sleeps
        assert requests.get(server.url(name), timeout=300).status_code == 200
    wait_for("a new zygote", lambda: (z := zygote()) and z["state"] == "ready"
             and z["pid"] != old, timeout=120, every=1, detail=zygote)
    assert not os.path.exists(f"/proc/{old}/status") or \
        "zombie" in open(f"/proc/{old}/status").read()
