"""nginx as the front server (web_server = "nginx"): the serving tests that matter,
against Debian's real nginx, in a host root of its own (conftest's `nserver`).

Which tests run under which front server is written in the README ("Tests").
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import websocket

from hoststate import site_pids
from linohost.model import tls
from runner import host_config
from serving import free_port, start_serve, stop_serve
from leftovers import assert_one_error_line
from test_apache import ODD_URLS, SECRETS, descendants, login, session_members, title_of
from test_browser import (AccessLog, active_service_worker, browser,  # noqa: F401 (fixture)
                          check_access_log, check_requests, extjs_session, react_session,
                          wait_until_served)
from test_keeper import Load
from test_live import notify, received, signed_in
from test_tls import ca, pebble, start_https_serve  # noqa: F401 (fixtures)
from test_tls import certificate_expiry
from tlsca import make_ca

pytestmark = [pytest.mark.slow, pytest.mark.nginx]


def nginx_pid(h):
    return int((h.root / "nginx" / "run" / "nginx.pid").read_text())


def restart(nserver, port=None):
    """Serve the session's host root anew (after a test stopped it)."""
    nserver.proc = start_serve(nserver.host, port or nserver.port, timeout=120).proc


def test_init_refuses_nginx_without_the_keeper(bare):
    cfg = bare.root / "linohost.toml"
    before = cfg.read_bytes()
    p = bare("init", "--web-server", "nginx", "--process-backend", "mod_wsgi", check=False)
    assert_one_error_line(p, 2, "nginx needs process_backend keeper")
    assert cfg.read_bytes() == before
    bare("init", "--web-server", "nginx")
    p = bare("init", "--process-backend", "mod_wsgi", check=False)
    assert p.returncode == 2 and "nginx needs process_backend keeper" in p.stderr
    assert 'web_server = "nginx"' in cfg.read_text() and "mod_wsgi" not in cfg.read_text()


def test_prefix_and_domain_sites_answer_each_in_its_own_worker(nserver):
    h = nserver.host
    titles = {n: json.loads(h("show", n, "--json").stdout)["title"]
              for n in [*nserver.prefix, nserver.domain]}
    for name in nserver.prefix:
        r = requests.get(nserver.url(name))
        assert r.status_code == 200 and title_of(r.text) == titles[name], name
    d = nserver.domain
    r = requests.get(nserver.url(f"{d}.localhost"))
    assert r.status_code == 200 and title_of(r.text) == titles[d]
    # its public name reaches it too (as a Host header: nothing resolves it here)
    r = requests.get(nserver.base + "/", headers={"Host": f"{d}.example.test:{nserver.port}"})
    assert r.status_code == 200 and title_of(r.text) == titles[d]
    pids = site_pids(h)
    assert len({pids[n] for n in titles}) == len(titles)
    # no slash: a redirect; a prefix like a site's is not that site
    a = next(iter(nserver.prefix))
    r = requests.get(f"{nserver.base}/{a}", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/{a}/")
    assert requests.get(f"{nserver.base}/{a}x/").status_code == 404
    # the landing page lists every site; Lino's icon at /favicon.ico
    r = requests.get(nserver.base + "/")
    assert r.status_code == 200 and all(n in r.text for n in titles)
    r = requests.get(nserver.base + "/favicon.ico")
    assert r.status_code == 200 and r.content[:4] in (b"\x00\x00\x01\x00", b"\x89PNG")


@pytest.mark.parametrize("path", ODD_URLS)
def test_odd_urls_reveal_nothing(nserver, path):
    a, b = list(nserver.prefix)
    url = nserver.base + "/" + path.format(a=a, b=b).lstrip("/")
    r = requests.get(url, allow_redirects=False)
    assert r.status_code in (301, 302, 400, 403, 404), (url, r.status_code)
    assert not any(s in r.text for s in SECRETS), (url, r.text[:200])


def test_a_foreign_host_header_is_refused_by_the_site(nserver):
    a = next(iter(nserver.prefix))
    r = requests.get(nserver.url(a), headers={"Host": "evil.example"})
    assert r.status_code == 400


def test_sessions_are_isolated_with_one_cookie_jar(nserver):
    a, b = list(nserver.prefix)
    jar = requests.Session()
    login(jar, nserver.url(a))
    assert {c.name: c.path for c in jar.cookies}["sessionid"] == f"/{a}"
    r = jar.get(nserver.url(b))
    assert r.status_code == 200 and "sessionid" not in r.request.headers.get("Cookie", "")


def test_media_and_static_from_disk_only_under_their_prefix(nserver):
    h, names = nserver.host, list(nserver.prefix)
    sites = {n: nserver.url(n) for n in names}
    sites[nserver.domain] = nserver.url(f"{nserver.domain}.localhost")
    for name in sites:
        (h.root / name / "media" / f"probe-{name}.txt").write_text(f"media of {name}\n")
    for name, base in sites.items():
        r = requests.get(base + f"media/probe-{name}.txt")
        assert r.status_code == 200 and r.text == f"media of {name}\n"
        assert all(requests.get(base + f"media/probe-{o}.txt").status_code == 404
                   for o in sites if o != name)
        assert requests.get(base + "media/").status_code in (403, 404)       # no listing
        assert requests.get(base + "static/").status_code in (403, 404)
        r = requests.get(base + "static/favicon2.ico")
        assert r.status_code == 200 and "nginx" in r.headers["Server"]       # from disk
    assert requests.get(f"{nserver.base}/media/probe-{names[0]}.txt").status_code == 404


def test_maintenance_page_while_a_site_moves(nserver):
    a, b = list(nserver.prefix)
    page = nserver.host.root / a / "maintenance.html"
    page.write_text("<p>being upgraded</p>")
    try:
        for url in (nserver.url(a), nserver.url(a) + "api/contacts/Companies?fmt=json"):
            r = requests.get(url)
            assert r.status_code == 503 and "being upgraded" in r.text
        assert requests.get(nserver.url(b)).status_code == 200
    finally:
        page.unlink()
    assert requests.get(nserver.url(a)).status_code == 200


def test_new_and_rm_under_load_fail_no_request_and_restart_nothing(nserver):
    """A reload of nginx (SIGHUP) for each: its master and every site worker stay."""
    h = nserver.host
    urls = [nserver.url(n) for n in nserver.prefix] + [nserver.url(f"{nserver.domain}.localhost")]
    for u in urls:
        assert requests.get(u, timeout=300).status_code == 200
    before, master = site_pids(h), nginx_pid(h)
    name = h.unique("ngbusy")
    with Load(urls) as load:
        p = h("new", name, "--app", "cosi", "--empty")
        assert f":{nserver.port}/{name}/" in p.stderr
        assert requests.get(nserver.url(name), timeout=300).status_code == 200
        h("rm", name, "--yes", "--no-archive")
        assert requests.get(nserver.url(name)).status_code == 404
        time.sleep(2)
    assert load.failures == [] and load.count > 10
    after = site_pids(h)
    assert {n: after.get(n) for n in before} == before
    assert nginx_pid(h) == master and nserver.proc.poll() is None
    log = (h.root.parent / f"serve-{nserver.port}.log").read_text()
    assert "reloading nginx" in log


def test_react_and_extjs_in_chromium_stay_inside_their_prefix(nserver, browser):  # noqa: F811
    log = AccessLog(nserver.host, "nginx-access.log")
    b = browser("nginx-prefix")
    for site, front_end in nserver.prefix.items():
        base = nserver.url(site)
        prefix = urlparse(base).path
        wait_until_served(base)
        b.label = f"nginx-prefix-{front_end}-{site}"
        b.requests.clear()
        log.mark()
        (react_session if front_end == "react" else extjs_session)(b, base)
        worker = active_service_worker(b)
        assert worker and urlparse(worker).path == prefix + "service-worker.js", worker
        check_requests(b, lambda url: url.startswith(base))
        logged = check_access_log(log, b.label, prefix)
        assert any(p.startswith(prefix + "api/") for m, p, s in logged)


def test_https_with_hsts_and_security_headers(nserver, tmp_path):
    """tls.mode files: the same headers as Apache's, plain HTTP on the port redirected."""
    h = nserver.host
    stop_serve(nserver)
    ca = make_ca(tmp_path / "ca")
    h.port = free_port()
    a = next(iter(nserver.prefix))
    (h.root / a / "media" / "probe.txt").write_text("probe\n")
    try:
        with host_config(h, **{"tls.mode": "files", "tls.cert_file": str(ca["cert"]),
                               "tls.key_file": str(ca["key"]), "apache.port": h.port}):
            s = start_https_serve(h, ca)
            try:
                for path in ("", "media/probe.txt", "static/favicon2.ico"):
                    r = requests.get(f"{s.base}/{a}/{path}", verify=ca["ca"])
                    assert r.status_code == 200, path
                    assert r.headers["Strict-Transport-Security"] == "max-age=31536000", path
                    assert r.headers["X-Content-Type-Options"] == "nosniff", path
                    assert r.headers["Referrer-Policy"] == "same-origin", path
                page = requests.get(f"{s.base}/{a}/", verify=ca["ca"])
                assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
                assert "," not in page.headers["X-Content-Type-Options"]    # one value
                r = requests.get(f"http://127.0.0.1:{h.port}/{a}/", allow_redirects=False)
                assert r.status_code == 301
                assert r.headers["Location"] == f"https://127.0.0.1:{h.port}/{a}/"
            finally:
                stop_serve(s)
    finally:
        restart(nserver)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_nginx_the_keeper_and_every_worker(nserver, sig):
    h = nserver.host
    stop_serve(nserver)
    s = start_serve(h, free_port(), timeout=120)
    try:
        for name in nserver.prefix:
            assert requests.get(s.url(name)).status_code == 200
        master = nginx_pid(h)
        members = session_members(master) + descendants(s.proc.pid)
        workers = site_pids(h)
        assert set(workers.values()) <= set(members) and master in members
    finally:
        code = stop_serve(s, sig)
        restart(nserver)
    assert code == 0
    left = [p for p in members if Path(f"/proc/{p}").exists()
            and p not in descendants(nserver.proc.pid)]
    assert left == []


def test_config_nginx_check_and_write_on_a_copy_of_etc_nginx(nserver, tmp_path):
    """`config nginx` against a copy of /etc/nginx (NGINX_CONFDIR): a config that
    fails `nginx -t` (a broken certificate) is never installed."""
    from linohost.apply.system_nginx import mirror
    h = nserver.host
    confdir = tmp_path / "nginx"
    mirror(Path("/etc/nginx"), confdir)
    env = {"NGINX_CONFDIR": str(confdir)}
    target = confdir / "sites-available" / "linohost.conf"
    link = confdir / "sites-enabled" / "linohost.conf"
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    broken = {"tls.mode": "files", "tls.cert_file": str(bad), "tls.key_file": str(bad)}

    def nginx_t():
        return subprocess.run(["/usr/sbin/nginx", "-t", "-c", str(confdir / "nginx.conf")],
                              capture_output=True).returncode

    with host_config(h, **{"nginx.config_path": str(target)}):
        with host_config(h, **broken):               # never installed, not even at first
            for args in (("--check",), ("--write",)):
                p = h("config", "nginx", *args, env=env, check=False)
                assert_one_error_line(p, 1, "nginx configtest failed")
            assert not target.exists() and not link.is_symlink()
        assert "nginx configtest passed" in h("config", "nginx", "--check", env=env).stderr
        text = h("config", "nginx").stdout
        for name in [*nserver.prefix, nserver.domain]:
            assert f"proxy_pass http://unix:{h.root}/run/sockets/{name}.sock:;" in text
        assert "proxy_http_version 1.1;" in text and "location /WS/ {" in text
        p = h("config", "nginx", "--write", env=env)
        assert "not reloading" in p.stderr                    # a copy, not the system's
        good = target.read_bytes()
        assert link.resolve() == target and nginx_t() == 0
        assert h("config", "nginx", "--diff", env=env).stdout == ""
        with host_config(h, **broken):
            p = h("config", "nginx", "--write", env=env, check=False)
            assert p.returncode == 1 and target.read_bytes() == good
        assert nginx_t() == 0


def test_acme_certificate_from_pebble_with_certbot(bare, pebble, ca, tmp_path):
    """tls.mode acme under nginx: `config nginx --write` installs the config with a
    placeholder certificate, certbot (webroot) gets the real one from pebble, the config
    is installed again with it; a renewal from what certbot stored changes no config."""
    from linohost.apply.system_nginx import mirror
    confdir = tmp_path / "nginx"
    mirror(Path("/etc/nginx"), confdir)
    env = {"NGINX_CONFDIR": str(confdir)}
    target = confdir / "sites-available" / "linohost.conf"
    le, name = tmp_path / "letsencrypt", "lh.example.test"
    cert = le / "live" / name / "fullchain.pem"
    with host_config(bare, **{"server_name": name, "tls.mode": "acme", "web_server": "nginx",
                              "tls.acme_directory": pebble["directory"],
                              "tls.acme_ca_file": str(ca["ca"]),
                              "tls.acme_email": "ops@linohost.test",
                              "certbot.config_dir": str(le), "nginx.config_path": str(target)}):
        p = bare("config", "nginx", "--write", env=env)
        assert cert.exists(), p.stderr
        text = target.read_text()
        assert f'ssl_certificate "{cert}";' in text and "placeholder" not in text
        assert "location /.well-known/acme-challenge/ {" in text
        assert subprocess.run(["/usr/sbin/nginx", "-t", "-c", str(confdir / "nginx.conf")],
                              capture_output=True).returncode == 0
        issuer = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-in", str(cert)],
                                capture_output=True, text=True).stdout
        assert "Pebble" in issuer, issuer
        assert certificate_expiry(bare) == {name: tls.not_after(cert)}    # page, metrics
        assert bare("config", "nginx", "--diff", env=env).stdout == ""
        # a renewal as Debian's certbot.timer runs it, from what certbot stored
        renewal = (le / "renewal" / f"{name}.conf").read_text()
        assert "authenticator = webroot" in renewal and pebble["directory"] in renewal
        before = cert.read_bytes()
        # (without certbot's random wait of up to 8 minutes, meant for many hosts at once)
        r = subprocess.run(["certbot", "renew", "--force-renewal", "--non-interactive",
                            "--no-random-sleep-on-renew",
                            "--config-dir", str(le), "--work-dir", str(le / "work"),
                            "--logs-dir", str(le / "logs")], capture_output=True, text=True,
                           env={**os.environ, "REQUESTS_CA_BUNDLE": str(ca["ca"])})
        assert r.returncode == 0, r.stderr
        assert cert.read_bytes() != before
        assert bare("config", "nginx", "--diff", env=env).stdout == ""


def test_a_notification_reaches_a_site_on_its_own_host_name_through_nginx(nserver):
    """nginx in front, a Noi site on its own host name: /WS/ of that host."""
    h = nserver.host
    name = h.unique("livedom")
    domain = f"{name}.localhost"
    h("new", name, "--app", "noi", "--domain", domain)
    try:
        base = f"http://{domain}:{nserver.port}/"
        s = signed_in(base)
        cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
        ws = websocket.create_connection(f"ws://127.0.0.1:{nserver.port}/WS/", cookie=cookie,
                                         host=f"{domain}:{nserver.port}", timeout=10)
        try:
            notify(h, name)
            assert received(ws, 10, 1) == ["live 0"]
        finally:
            ws.close()
    finally:
        h("rm", name, "--yes", "--no-archive", check=False)
