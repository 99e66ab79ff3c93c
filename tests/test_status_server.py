"""The keeper's /_linohost/ server on a real unix socket, with the real gate over
an initialised host root: who gets the metrics, parsed by prometheus_client."""
import base64
import http.client
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from linohost.keeper import access, paths, statuspage
from linohost.keeper import states as st
from linohost.keeper.actions import Actions
from linohost.keeper.metrics import KeeperCollector
from linohost.keeper.slot import Slot
from linohost.keeper.statusserver import StatusServer, application
from linohost.model.host import Host


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(self.path))


def _get(path, url="/_linohost/metrics", method="GET", **headers):
    conn = _UnixConnection(path)
    conn.request(method, url, headers=headers)
    r = conn.getresponse()
    return r.status, r.read().decode()


@pytest.fixture
def served(bare):
    host = Host.open(bare.root)
    paths.sockets_dir(host).mkdir(parents=True, exist_ok=True)
    slot = Slot("alpha", None, None)
    slot.state, slot.requests = st.SLEEPING, 4
    collector = KeeperCollector(lambda: {"sites": [slot.row()], "zygotes": []})
    page = lambda: statuspage.page({"sites": [slot.row()], "zygotes": []}, {})  # noqa: E731
    server = StatusServer(paths.status_socket(host),
                          application(collector, access.Gate(host), page=page,
                                      actions=Actions(host))).start()
    yield host, server.path, slot
    server.close()


def _requests(text):
    return {s.labels["site"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "linohost_site_requests_total"}


def test_without_password_only_the_host_itself(served):
    host, sock, slot = served
    assert _get(sock, **{"X-Forwarded-For": "127.0.0.1"})[0] == 200
    assert _get(sock, **{"X-Forwarded-For": "203.0.113.7"})[0] == 401
    assert _get(sock, **{"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})[0] == 401
    assert _get(sock)[0] == 401
    status, text = _get(sock, **{"X-Forwarded-For": "::1"})
    assert status == 200 and _requests(text) == {"alpha": 4.0}
    slot.requests = 9
    assert _requests(_get(sock, **{"X-Forwarded-For": "::1"})[1]) == {"alpha": 9.0}
    assert _get(sock, url="/_linohost/other", **{"X-Forwarded-For": "::1"})[0] == 404


def test_with_password_basic_auth_or_token(served):
    host, sock, _ = served
    access.write_password(host, "s3cret pass")
    assert access.password_file(host).stat().st_mode & 0o777 == 0o600
    def basic(user, pw):
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    assert _get(sock, **{"X-Forwarded-For": "127.0.0.1"})[0] == 401
    assert _get(sock, Authorization=basic("admin", "wrong"))[0] == 401
    assert _get(sock, Authorization=basic("root", "s3cret pass"))[0] == 401
    assert _get(sock, Authorization=basic("admin", "s3cret pass"))[0] == 200
    assert _get(sock, Authorization="Bearer abc")[0] == 401   # no token file yet
    access.token_file(host).write_text("abc\n")
    access.token_file(host).chmod(0o600)
    assert _get(sock, Authorization="Bearer abc")[0] == 200
    assert _get(sock, Authorization="Bearer abd")[0] == 401


def test_status_page_lists_the_sites(served):
    host, sock, slot = served
    slot.last_failure = "exit code 3: <boom>"
    assert _get(sock, url="/_linohost/", **{"X-Forwarded-For": "203.0.113.7"})[0] == 401
    status, html = _get(sock, url="/_linohost/", **{"X-Forwarded-For": "127.0.0.1"})
    assert status == 200
    assert "<td>alpha</td><td>sleeping</td>" in html
    assert "&lt;boom&gt;" in html and "<boom>" not in html   # escaped


def test_an_action_from_a_page_of_another_origin_is_refused(served):
    """Browsers send Origin with every POST; it must name the host the front server
    saw (Apache appends its X-Forwarded-Host to a client's). Here the site is no
    registered one: an action let through says so (409)."""
    host, sock, slot = served
    url = "/_linohost/sites/alpha/wake"
    local = {"X-Forwarded-For": "127.0.0.1"}
    assert _get(sock, url, "POST", Origin="http://evil.example",
                **{**local, "X-Forwarded-Host": "lino.example"})[0] == 403
    assert _get(sock, url, "POST", Origin="https://lino.example",
                **{**local, "X-Forwarded-Host": "lino.example, evil.example"})[0] == 403
    status, body = _get(sock, url, "POST", Origin="https://lino.example",
                        **{**local, "X-Forwarded-Host": "evil.example, lino.example"})
    assert status == 409 and "no site named 'alpha'" in body
    assert _get(sock, url, "POST", **local)[0] == 409          # no Origin: not a browser
    assert _get(sock, url, "POST", Origin="https://lino.example")[0] == 401
    assert _get(sock, url, **local)[0] == 405
    assert _get(sock, "/_linohost/sites/nosuch/log", **local)[0] == 409
    assert _get(sock, "/_linohost/sites/../log", **local)[0] == 404
