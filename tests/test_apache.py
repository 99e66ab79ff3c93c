"""Many sites behind one real Apache: routing, processes, media, sessions, odd URLs."""

import json
import os
import re
import signal
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from hoststate import site_pids
from serving import free_port, start_serve, stop_serve

pytestmark = pytest.mark.slow


def login(session, base):
    """Sign in as the demo user robin at the Lino site under *base* (ends with /)."""
    session.get(base)                                  # for the CSRF cookie
    u = urlparse(base)
    token = [c.value for c in session.cookies if c.name == "csrftoken"
             and u.path.startswith(c.path) and u.hostname == c.domain][-1]
    r = session.post(base + "api/about/About/-99998",
                     data={"an": "sign_in", "username": "robin", "password": "1234"},
                     headers={"Referer": base, "X-CSRFToken": token})
    assert r.status_code == 200 and '"success": true' in r.text, r.text[:300]


SIGN_IN = "About.sign_in.run"        # the link on an anonymous ExtJS main page


def companies(session, base, text):
    r = session.get(base + "api/contacts/Companies",
                    params={"fmt": "json", "limit": 20, "quick_search": text})
    assert r.status_code == 200, r.text[:300]
    return r.text


def title_of(html):
    m = re.search(r"<title[^>]*>(.*?)</title>", html, re.S)
    return m.group(1).strip() if m else None


@pytest.fixture(scope="module")
def all_sites(host, server, cosi_sites, domain_sites):
    """{site name: base URL} of the three prefix and two domain sites, each with a
    company named after it in its own database."""
    sites = {name: server.url(name) for name in cosi_sites.values()}
    sites.update({name: server.url(f"{name}.localhost") for name in domain_sites})
    for name in sites:
        host("manage", name, "--", "shell", "-c",
             f"from lino.api import rt; rt.models.contacts.Company(name='Marker {name}').save()")
    return sites


def test_each_url_is_answered_by_its_own_site_in_its_own_process(host, all_sites):
    for name, base in all_sites.items():
        s = requests.Session()
        r = s.get(base)
        assert r.status_code == 200, (name, r.status_code)
        assert title_of(r.text) == host("show", name, "--json").stdout.split('"title": "')[1].split('"')[0]
        login(s, base)
        found = companies(s, base, "Marker")
        assert f"Marker {name}" in found
        assert all(f"Marker {other}" not in found for other in all_sites if other != name)
    pids = site_pids(host)
    assert set(all_sites) <= set(pids)
    assert len({pids[n] for n in all_sites}) == len(all_sites)
    # site daemons never run as root
    for n in all_sites:
        assert os.stat(f"/proc/{pids[n]}").st_uid != 0 or os.geteuid() != 0


def test_media_only_under_its_own_prefix_or_host(host, server, all_sites):
    names = list(all_sites)
    for name in names:
        Path(host.root / name / "media" / f"probe-{name}.txt").write_text(f"media of {name}\n")
    for name, base in all_sites.items():
        r = requests.get(base + f"media/probe-{name}.txt")
        assert r.status_code == 200 and r.text == f"media of {name}\n"
        for other in names:
            if other != name:
                assert requests.get(base + f"media/probe-{other}.txt").status_code == 404
    # not at the server root, nor listed as a directory
    assert requests.get(f"{server.base}/media/probe-{names[0]}.txt").status_code == 404
    assert requests.get(all_sites[names[0]] + "media/").status_code in (403, 404)


def test_sessions_are_isolated_with_one_cookie_jar(server, cosi_sites):
    a, b = cosi_sites["sqlite"], cosi_sites["postgresql"]
    jar = requests.Session()
    login(jar, server.url(a))
    assert {c.name: c.path for c in jar.cookies}["sessionid"] == f"/{a}"
    assert SIGN_IN not in jar.get(server.url(a)).text
    # b gets no cookie of a's and is still anonymous
    r = jar.get(server.url(b))
    assert "sessionid" not in r.request.headers.get("Cookie", "")
    assert SIGN_IN in r.text
    # and a is still signed in after visiting b
    assert SIGN_IN not in jar.get(server.url(a)).text


SECRETS = ("SECRET_KEY", "DATABASES", "djangosite_local", "SQLite format 3", "BEGIN ",
           "import os")


#: URLs that must not reach a file outside media/ and static/ ({a}, {b}: two sites).
ODD_URLS = [
    "{a}/media/../settings.py",
    "{a}/media/%2e%2e/settings.py",
    "{a}/media/%2E%2E%2Fsettings.py",
    "{a}/media/..%2fsettings.py",
    "{a}/static/../../{a}/settings.py",
    "{a}/static/%2e%2e/%2e%2e/{a}/settings.py",
    "{a}//media/../../{a}/settings.py",
    "/{a}/settings.py",
    "{a}/default.db",
    "{a}/apache/wsgi.py",
    "{a}/media/../../linohost.toml",
    "{a}/media/%2e%2e/%2e%2e/secrets/master.key",
    "/secrets/master.key",
    "/linohost.toml",
    "/nosuchsite/",
    "/{b}/../{a}/media/../settings.py",
]


@pytest.mark.parametrize("path", ODD_URLS)
def test_odd_urls_reveal_nothing(server, cosi_sites, path):
    a, b = cosi_sites["sqlite"], cosi_sites["postgresql"]
    url = server.base + "/" + path.format(a=a, b=b).lstrip("/")
    r = requests.get(url, allow_redirects=False)
    assert r.status_code in (301, 302, 400, 403, 404), (url, r.status_code)
    assert not any(s in r.text for s in SECRETS), (url, r.text[:200])


def test_unknown_prefix_and_missing_slash(server, cosi_sites):
    a = cosi_sites["sqlite"]
    r = requests.get(f"{server.base}/{a}", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/{a}/")
    r = requests.get(f"{server.base}/zz{a}/", allow_redirects=False)
    assert r.status_code == 404
    # a prefix that starts like a site's name is not that site
    assert requests.get(f"{server.base}/{a}x/").status_code == 404


def test_landing_page_lists_every_site(server, all_sites):
    r = requests.get(server.base + "/")
    assert r.status_code == 200
    for name, base in all_sites.items():
        assert name in r.text
    r = requests.get(server.base + "/favicon.ico")
    assert r.status_code == 200 and r.content[:4] in (b"\x00\x00\x01\x00", b"\x89PNG")


def test_list_and_status_know_what_serves(host, server, cosi_sites):
    """URLs on the port that serves (not the configured one), and a served site is
    no failure for a monitoring script."""
    from linohost.model.host import Host
    assert server.port != Host.open(host.root).cfg["apache.port"]     # free_port()
    rows = {r["name"]: r for r in json.loads(host("list", "--json").stdout)}
    for name in cosi_sites.values():
        assert f":{server.port}/{name}/" in rows[name]["url"], rows[name]
    name = cosi_sites["sqlite"]
    p = host("status", name, "--check")
    assert json.loads(host("status", name, "--json").stdout)[0]["state"] != "unserved"
    assert "nothing serves" not in p.stderr


def test_new_and_rm_take_effect_while_serving(host, server):
    """`new` says "ready" once the running serve routes to the site (no 404 right
    after it), `rm` returns once it no longer does."""
    name = host.unique("live")
    p = host("new", name, "--app", "cosi", "--empty")
    assert f":{server.port}/{name}/" in p.stderr, p.stderr        # where it is served
    assert requests.get(server.url(name), timeout=300).status_code == 200
    host("rm", name, "--yes")
    assert requests.get(server.url(name)).status_code == 404
    assert server.proc.poll() is None


def test_maintenance_page_while_a_site_moves(host, server, cosi_sites):
    a, b = cosi_sites["sqlite"], cosi_sites["mysql"]
    page = host.root / a / "maintenance.html"
    page.write_text("<p>being upgraded</p>")
    try:
        for url in (server.url(a), server.url(a) + "api/contacts/Companies?fmt=json"):
            r = requests.get(url)
            assert r.status_code == 503 and "being upgraded" in r.text
        assert requests.get(server.url(b)).status_code == 200     # the others go on
    finally:
        page.unlink()
    assert requests.get(server.url(a)).status_code == 200


def session_members(sid):
    """Pids of the processes in session *sid*."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:         # field 6 of stat: session id
                out.append(int(d.name))
    return out


def descendants(pid):
    """Pids of every process below *pid*."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_apache_and_every_site_process(host, cosi_sites, server, sig):
    # The session server holds this root's Apache: stop it, serve anew, stop that.
    stop_serve(server)
    s = start_serve(host, free_port(), timeout=120)
    try:
        for name in cosi_sites.values():
            assert requests.get(s.url(name)).status_code == 200
        httpd = int((host.root / "apache" / "run" / "httpd.pid").read_text())
        members = session_members(httpd) + descendants(s.proc.pid)
        workers = site_pids(host)
        assert set(cosi_sites.values()) <= set(workers)
        assert set(workers.values()) <= set(members)
        assert len(members) >= 1 + len(cosi_sites)
    finally:
        code = stop_serve(s, sig)
    assert code == 0
    p = host("status", "--check", check=False)       # what a monitoring script sees
    assert p.returncode == 1 and "nothing serves the sites" in p.stderr, p.stderr
    assert {r["state"] for r in json.loads(host("status", "--json").stdout)} == {"unserved"}
    assert [p for p in members if Path(f"/proc/{p}").exists()] == []
    assert list((host.root / "run" / "sockets").glob("*")) == []
    assert not (host.root / "run" / "keeper.sock").exists()
    # and the session server comes back for the tests after this one
    server.proc = start_serve(host, server.port, timeout=120).proc
