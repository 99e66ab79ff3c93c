"""/_linohost/metrics through the front server of a real `linohost serve`."""
import requests
from hoststate import status, wait_for
from test_keeper import put_to_sleep
from prometheus_client.parser import text_string_to_metric_families

from linohost.keeper import access
from linohost.model.host import Host


def _requests_of(text, site):
    return {s.labels["site"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "linohost_site_requests_total"}.get(site)


def test_metrics_through_the_front_server(host, kserver, cosi_sites):
    site = sorted(cosi_sites.values())[0]
    url = kserver.base + "/_linohost/metrics"
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    before = _requests_of(r.text, site)
    assert before is not None
    assert requests.get(kserver.url(site), timeout=300).status_code == 200
    # the worker reports its count at most once a second
    wait_for("the request counted",
             lambda: _requests_of(requests.get(url, timeout=30).text, site) > before)
    h = Host.open(host.root)
    access.write_password(h, "pw for test")
    try:
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, auth=("admin", "pw for test"), timeout=30).status_code == 200
    finally:
        access.password_file(h).unlink()


def _state_in(html, site):
    return html.split(f"<td>{site}</td><td>", 1)[1].split("</td>", 1)[0]


def test_status_page_lists_every_site_and_no_secret(host, kserver, cosi_sites):
    site = sorted(cosi_sites.values())[0]
    page = kserver.base + "/_linohost/"
    assert requests.get(kserver.url(site), timeout=300).status_code == 200
    html = requests.get(page, timeout=30).text
    assert _state_in(html, site) == "running"
    assert all(f"<td>{name}</td>" in html for name in status(host))
    put_to_sleep(host, site)
    assert _state_in(requests.get(page, timeout=30).text, site) == "sleeping"
    key = "from django.conf import settings; print('KEY', settings.SECRET_KEY)"
    secret = host("manage", site, "--", "shell", "-c", key).stdout.split("KEY ")[1].split()[0]
    html = requests.get(page, timeout=30).text
    assert secret not in html
    db_password = host.root / "secrets" / f"db-{site}"
    if db_password.exists():
        assert db_password.read_text().strip() not in html
