"""HTTPS with certificate files: `linohost serve` on a CA made here, redirects, HSTS,
secure cookies, CSRF, and Django's deployment check."""

import os
import shutil
import time

import pytest
import requests

from runner import HostRoot, LINOHOST, make_root, share_envs
from serving import free_port, Server, stop_serve
from leftovers import assert_one_error_line
from test_apache import login, session_members
from tlsca import make_ca

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ca():
    """The test CA, readable by mod_md's watchdog (www-data), which checks pebble with it."""
    base = make_root("linohost-ca-")
    yield make_ca(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_host(ca, host):
    """A host root with tls.mode files and one Cosi site under a prefix."""
    base = make_root("linohost-tls-")
    h = HostRoot(base / "root")
    port = free_port()
    h("init", "--port", port, "--tls", "files", "--cert-file", ca["cert"],
      "--key-file", ca["key"])
    share_envs(h, host)
    h.site = h.unique("tls")
    h("new", h.site, "--app", "cosi")
    h.port = port
    yield h
    h("rm", h.site, "--yes", "--no-archive", check=False)
    shutil.rmtree(base, ignore_errors=True)


def start_https_serve(h, ca, timeout=900):
    """`linohost serve` of *h*, once its landing page answers over HTTPS."""
    import subprocess
    env = {**os.environ, "LINOHOST_ROOT": str(h.root)}
    log = h.root.parent / f"serve-{h.port}.log"
    proc = subprocess.Popen([*LINOHOST, "serve"], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(f"https://127.0.0.1:{h.port}/", verify=ca["ca"],
                            timeout=5).status_code == 200:
                s = Server(h, h.port, proc)
                s.base = f"https://127.0.0.1:{h.port}"
                return s
        except requests.ConnectionError:
            pass
        time.sleep(1)
    proc.kill()
    raise AssertionError("serve did not answer in time: " + log.read_text())


def trusting(ca):
    """A session that trusts the test CA only (REQUESTS_CA_BUNDLE would override it)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(ca["ca"])
    return s


@pytest.fixture(scope="module")
def https(tls_host, ca):
    s = start_https_serve(tls_host, ca)
    yield s
    stop_serve(s)


def test_serves_https_that_only_the_test_ca_vouches_for(tls_host, https, ca):
    base = f"{https.base}/{tls_host.site}/"
    r = requests.get(base, verify=ca["ca"])
    assert r.status_code == 200 and "<title" in r.text
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(base)                       # the system's CAs do not know it
    # the names of the certificate: localhost and *.localhost too
    assert requests.get(f"https://localhost:{https.port}/{tls_host.site}/",
                        verify=ca["ca"]).status_code == 200
    assert "https://" in tls_host("list", "--json").stdout


def test_plain_http_is_redirected_to_https(tls_host, https, ca):
    # serve has one port: mod_ssl sees plain HTTP on it but not its path
    r = requests.get(f"http://127.0.0.1:{https.port}/{tls_host.site}/", allow_redirects=False)
    assert r.status_code == 302, (r.status_code, r.text[:200])
    assert r.headers["Location"] == f"https://localhost:{https.port}/"
    r = requests.get(f"http://127.0.0.1:{https.port}/{tls_host.site}/", verify=ca["ca"])
    assert r.status_code == 200 and r.url == f"https://localhost:{https.port}/"
    assert tls_host.site in r.text                       # the landing page lists it


def test_hsts_and_security_headers_on_pages_and_files(tls_host, https, ca):
    (tls_host.root / tls_host.site / "media" / "probe.txt").write_text("probe\n")
    for path in ("", "media/probe.txt"):
        r = requests.get(f"{https.base}/{tls_host.site}/{path}", verify=ca["ca"])
        assert r.status_code == 200, path
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Referrer-Policy"] == "same-origin", path
    page = requests.get(f"{https.base}/{tls_host.site}/", verify=ca["ca"])
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    # Apache adds its headers only where the site set none: one value each
    assert "," not in page.headers["Strict-Transport-Security"]


def test_sign_in_gets_secure_cookies(tls_host, https, ca):
    s = trusting(ca)
    login(s, f"{https.base}/{tls_host.site}/")
    cookies = {c.name: c for c in s.cookies}
    assert cookies["sessionid"].secure and cookies["csrftoken"].secure
    assert cookies["sessionid"].path == f"/{tls_host.site}"


def test_forged_cross_origin_post_with_a_valid_session_is_refused(tls_host, https, ca):
    base = f"{https.base}/{tls_host.site}/"
    s = trusting(ca)
    login(s, base)
    token = s.cookies.get("csrftoken", path=f"/{tls_host.site}")
    url = base + "api/contacts/Companies/-99998"
    data = {"an": "submit_insert", "name": "Forged Ltd"}
    forged = [
        {"Origin": "https://evil.example", "Referer": "https://evil.example/"},
        {"Origin": "https://evil.example", "Referer": "https://evil.example/",
         "X-CSRFToken": "x" * 32},
        {"Referer": "https://evil.example/", "X-CSRFToken": token},
    ]
    for headers in forged:
        r = s.post(url, data=data, headers=headers)
        assert r.status_code == 403, (headers, r.status_code, r.text[:200])
    # the same request from the site itself goes through (the check can fail)
    r = s.post(url, data={**data, "name": "Genuine Ltd"},
               headers={"Origin": https.base, "Referer": base, "X-CSRFToken": token})
    assert r.status_code == 200 and '"success": true' in r.text, r.text[:300]
    names = tls_host("manage", tls_host.site, "--", "shell", "-c",
                     "from lino.api import rt; print(sorted(c.name for c in "
                     "rt.models.contacts.Company.objects.filter(name__endswith=' Ltd')))").stdout
    assert "Genuine Ltd" in names and "Forged Ltd" not in names


def test_check_deploy_reports_nothing(tls_host):
    p = tls_host("manage", tls_host.site, "--", "check", "--deploy", "--fail-level", "WARNING")
    assert "System check identified no issues" in p.stdout + p.stderr


def test_init_refuses_tls_without_usable_certificates(tls_host, ca, tmp_path):
    before = (tls_host.root / "linohost.toml").read_bytes()
    not_pem = tmp_path / "x.txt"
    not_pem.write_text("hello\n")
    for args in (["--cert-file", tmp_path / "missing.pem"],
                 ["--cert-file", not_pem],
                 ["--tls", "files", "--cert-file", "", "--key-file", ""]):
        p = tls_host("init", *args, check=False)
        assert p.returncode == 2, p.stderr
        assert_one_error_line(p)
        assert (tls_host.root / "linohost.toml").read_bytes() == before


# -- ACME: pebble issues, the system Apache (mod_md) serves --------------------------

@pytest.fixture
def pebble(ca, tmp_path):
    """Let's Encrypt's ACME test server on 127.0.0.1, its directory served with the
    test CA's certificate; every challenge passes (no DNS or HTTP validation here)."""
    import json
    import subprocess
    port, mgmt = free_port(), free_port()
    conf = tmp_path / "pebble.json"
    conf.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(ca["cert"]), "privateKey": str(ca["key"]),
        "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "1",
           "PEBBLE_WFE_NONCEREJECT": "0"}
    log = tmp_path / "pebble.log"
    proc = subprocess.Popen(["/usr/bin/pebble", "-config", conf], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    directory = f"https://127.0.0.1:{port}/dir"
    try:
        for _ in range(60):
            assert proc.poll() is None, log.read_text()
            try:
                requests.get(directory, verify=ca["ca"], timeout=5).raise_for_status()
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        root = tmp_path / "pebble-root.pem"     # the CA pebble issues under, made at start
        root.write_text(requests.get(f"https://127.0.0.1:{mgmt}/roots/0", verify=ca["ca"]).text)
        yield {"directory": directory, "root": root}
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def apache_instance():
    """A copy of Debian's /etc/apache2 running its own apache2 (ports, pid, logs, mod_md
    store in a directory of its own), as `apache2ctl` runs a second instance: /etc/apache2
    and a running system Apache are left alone."""
    import subprocess
    base = make_root("linohost-apache-")      # mod_md's watchdog (www-data) must reach it
    d = base / "apache"
    conf = d / "apache2"
    shutil.copytree("/etc/apache2", conf, symlinks=True)
    for p in (conf / "sites-enabled").iterdir():
        p.unlink()
    for sub in ("run", "lock", "log", "md"):
        (d / sub).mkdir()
    (conf / "envvars").write_text(
        "unset HOME\nexport APACHE_RUN_USER=www-data\nexport APACHE_RUN_GROUP=www-data\n"
        f"export APACHE_PID_FILE={d}/run/apache2.pid\nexport APACHE_RUN_DIR={d}/run\n"
        f"export APACHE_LOCK_DIR={d}/lock\nexport APACHE_LOG_DIR={d}/log\nexport LANG=C\n")
    http, https = free_port(), free_port()
    (conf / "ports.conf").write_text(f"Listen 127.0.0.1:{http}\nListen 127.0.0.1:{https}\n")
    # mod_md's store here; it is told that the public ports 80/443 are these ones
    (conf / "conf-enabled" / "zz-linohost-test.conf").write_text(
        f"ServerName localhost\nMDStoreDir {d}/md\nMDPortMap http:{http} https:{https}\n"
        f"<IfModule wsgi_module>\n    WSGISocketPrefix {d}/run/wsgi\n</IfModule>\n")
    env = {**os.environ, "APACHE_CONFDIR": str(conf)}
    inst = type("ApacheInstance", (), dict(dir=d, conf=conf, env=env, http=http, https=https))
    yield inst
    try:
        pid = int((d / "run" / "apache2.pid").read_text())
    except (OSError, ValueError):
        pid = None
    subprocess.run(["apache2ctl", "stop"], env=env, capture_output=True)
    if pid:                      # apache2 and its mod_wsgi daemons: the session it leads
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in session_members(pid):
            os.kill(p, 9)
    shutil.rmtree(base, ignore_errors=True)


def test_acme_certificate_from_pebble_served_by_the_system_apache(
        tls_host, pebble, apache_instance, ca):
    import subprocess
    from test_system_apache import host_config
    a = apache_instance
    with host_config(tls_host, **{
            "tls.mode": "acme", "tls.acme_directory": pebble["directory"],
            "tls.acme_ca_file": str(ca["ca"]), "tls.acme_email": "ops@linohost.test",
            "tls.https_port": a.https, "apache.vhost_port": a.http,
            "apache.md_store_dir": str(a.dir / "md"),
            "apache.config_path": str(a.conf / "sites-available" / "linohost.conf")}):
        text = tls_host("config", "apache").stdout
        for line in (f"MDCertificateAuthority {pebble['directory']}", "MDomain localhost",
                     "MDCertificateAgreement accepted", "MDContactEmail ops@linohost.test",
                     f"<VirtualHost *:{a.https}>", "SSLEngine on"):
            assert line in text
        assert "SSLCertificateFile" not in text          # mod_md provides it
        p = tls_host("config", "apache", "--write", env=a.env)
        assert (a.conf / "mods-enabled" / "md.load").exists(), p.stderr
        t0 = time.monotonic()
        subprocess.run(["apache2ctl", "start"], env=a.env, check=True, capture_output=True)
        staged = a.dir / "md" / "staging" / "localhost" / "pubcert.pem"
        while not staged.exists():
            assert time.monotonic() - t0 < 120, (a.dir / "log" / "error.log").read_text()
            time.sleep(0.2)
        first_cert = time.monotonic() - t0
        print(f"\nfirst certificate from pebble (mod_md, from Apache start): {first_cert:.1f} s")
        # mod_md activates a new certificate at the next graceful restart
        subprocess.run(["apache2ctl", "graceful"], env=a.env, check=True, capture_output=True)
        base = f"https://localhost:{a.https}"
        for _ in range(60):
            try:
                r = requests.get(base + "/", verify=pebble["root"], timeout=10)
                break
            except requests.exceptions.SSLError:     # still the fallback certificate
                time.sleep(0.5)
        assert r.status_code == 200 and tls_host.site in r.text
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        with pytest.raises(requests.exceptions.SSLError):   # pebble's CA, not the test CA
            requests.get(base + "/", verify=ca["ca"])
        r = requests.get(f"{base}/{tls_host.site}/", verify=pebble["root"], timeout=300)
        assert r.status_code == 200 and "<title" in r.text
        r = requests.get(f"http://localhost:{a.http}/{tls_host.site}/", allow_redirects=False)
        assert r.status_code == 301
        assert r.headers["Location"] == f"{base}/{tls_host.site}/"
        # The status page and the metrics read its expiry where mod_md keeps it.
        assert certificate_expiry(tls_host) == {"localhost": served_until(base, pebble)}


def certificate_expiry(h):
    """{vhost: epoch} as the keeper's status page and metrics read it (sitefacts)."""
    from linohost.keeper.sitefacts import SiteFacts
    from linohost.model.host import Host
    return SiteFacts(Host.open(h.root)).certificates()


def served_until(base, pebble):
    """When the certificate served at *base* (https://NAME:PORT) expires (epoch)."""
    import socket
    import ssl
    host, port = base.split("//")[1].split(":")
    ctx = ssl.create_default_context(cafile=str(pebble["root"]))
    with socket.create_connection((host, int(port)), timeout=10) as s, \
            ctx.wrap_socket(s, server_hostname=host) as t:
        return ssl.cert_time_to_seconds(t.getpeercert()["notAfter"])


def test_serve_under_acme_needs_certificate_files(tls_host):
    from test_system_apache import host_config
    with host_config(tls_host, **{"tls.mode": "acme", "tls.cert_file": ""}):
        p = tls_host("serve", "--port", free_port(), check=False, timeout=120)
    assert p.returncode == 2
    assert_one_error_line(p)
    assert "tls.cert_file" in p.stderr
