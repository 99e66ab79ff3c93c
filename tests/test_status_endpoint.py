"""/_linohost/ through the front server of a real `linohost serve`: the metrics, the
status page and its actions (with requests, and as a person clicks them in Chromium)."""
import re
import subprocess

import pytest
import requests
from hoststate import status, wait_for
from runner import host_config
from test_keeper import put_to_sleep
from prometheus_client.parser import text_string_to_metric_families

from linohost.keeper import access, statuspage
from linohost.keeper.metrics import last_backups
from linohost.model.host import Host


def _requests_of(text, site):
    return {s.labels["site"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "linohost_site_requests_total"}.get(site)


def _answers_of(text, site):
    """({class: count}, the latency histogram's count) of *site*."""
    classes, count = {}, None
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if s.labels.get("site") != site:
                continue
            if s.name == "linohost_site_responses_total":
                classes[s.labels["class"]] = s.value
            elif s.name == "linohost_site_request_duration_seconds_count":
                count = s.value
    return classes, count


def test_metrics_through_the_front_server(host, kserver, cosi_sites):
    site = sorted(cosi_sites.values())[0]
    url = kserver.base + "/_linohost/metrics"
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    before = _requests_of(r.text, site)
    classes, _ = _answers_of(r.text, site)
    assert before is not None and set(classes) == {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert requests.get(kserver.url(site), timeout=300).status_code == 200
    assert requests.get(kserver.url(site) + "no/such/page/", timeout=60).status_code == 404
    # the worker reports its count at most once a second
    wait_for("the requests counted",
             lambda: _requests_of(requests.get(url, timeout=30).text, site) >= before + 2)

    def counted():
        now, count = _answers_of(requests.get(url, timeout=30).text, site)
        return (now["2xx"] > classes["2xx"] and now["4xx"] > classes["4xx"]
                and count == sum(now.values()) and now)
    wait_for("the answers counted by class and in the latency histogram", counted)
    h = Host.open(host.root)
    access.write_password(h, "pw for test")
    try:
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, auth=("admin", "pw for test"), timeout=30).status_code == 200
    finally:
        access.password_file(h).unlink()


def _state_in(html, site):
    return html.split(f"<td>{site}</td><td>", 1)[1].split("</td>", 1)[0]


def _row(html, site):
    return html.split(f"<td>{site}</td>", 1)[1].split("</tr>", 1)[0]


def _last_hour(html, site):
    """(requests, 5xx answers) of *site* in the last hour, as its row shows them."""
    cell = _row(html, site).split('<td class="num hour">', 1)[1].split("</td>", 1)[0]
    return tuple(int(n) for n in cell.split(" / "))


def _requests_plotted(html, site):
    """The heights of the points of *site*'s requests plot (0: none)."""
    points = re.search(r'<svg class="plot requests"[^>]*>.*?(?:<polyline points="([^"]*)"|</svg>)',
                       _row(html, site))[1] or ""
    return [statuspage.HEIGHT - int(p.split(",")[1]) for p in points.split()]


def test_status_page_lists_every_site_and_no_secret(host, kserver, cosi_sites):
    """Every site, its state, app and environment; with a history sampled every
    second, its requests in the last hour and in its plot; no secret."""
    site = sorted(cosi_sites.values())[0]
    page = kserver.base + "/_linohost/"
    with host_config(host, **{"keeper.history_interval": 1}):
        before = _last_hour(requests.get(page, timeout=30).text, site)
        for path in ("", "no/such/page/", ""):
            requests.get(kserver.url(site) + path, timeout=300)
        wait_for("the requests in the last hour",
                 lambda: _last_hour(requests.get(page, timeout=30).text, site)[0]
                 >= before[0] + 3)
        html = requests.get(page, timeout=30).text
    assert _state_in(html, site) == "running"
    assert all(f"<td>{name}</td>" in html for name in status(host))
    assert any(_requests_plotted(html, site)), _row(html, site)
    env_python = Host.open(host.root).env("default").bin_python
    version = subprocess.run([env_python, "-c", "import importlib.metadata as m; "
                              "print(m.version('lino-cosi'))"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert f"<td>cosi {version}</td><td>default</td>" in _row(html, site)
    assert "memory of workers" in html and "available memory" in html
    put_to_sleep(host, site)
    assert _state_in(requests.get(page, timeout=30).text, site) == "sleeping"
    key = "from django.conf import settings; print('KEY', settings.SECRET_KEY)"
    secret = host("manage", site, "--", "shell", "-c", key).stdout.split("KEY ")[1].split()[0]
    html = requests.get(page, timeout=30).text
    assert secret not in html
    db_password = host.root / "secrets" / f"db-{site}"
    if db_password.exists():
        assert db_password.read_text().strip() not in html


def test_the_page_wakes_lets_sleep_backs_up_and_shows_the_log(host, kserver, cosi_sites):
    """Each action answers with a redirect to the page and does what it says; an action
    posted by a page of another origin, or by GET, or for no site, is refused."""
    site = sorted(cosi_sites.values())[0]
    page = kserver.base + "/_linohost/"
    state = lambda: status(host)[site]["state"]                         # noqa: E731

    def act(action, name=site, **kw):
        return requests.post(f"{page}sites/{name}/{action}", allow_redirects=False,
                             timeout=30, **kw)
    put_to_sleep(host, site)
    assert f'action="sites/{site}/wake"' in requests.get(page, timeout=30).text
    assert act("wake", headers={"Origin": "http://evil.example"}).status_code == 403
    assert requests.get(f"{page}sites/{site}/wake", timeout=30).status_code == 405
    assert act("wake", name="nosuchsite").status_code == 409
    assert state() == "sleeping"

    r = act("wake", headers={"Origin": kserver.base})       # a form of the page itself
    assert (r.status_code, r.headers["Location"]) == (303, "/_linohost/")
    wait_for("the site awake", lambda: state() == "running", timeout=120)
    assert act("sleep").status_code == 303
    wait_for("the site asleep", lambda: state() == "sleeping", timeout=60)

    log = requests.get(f"{page}sites/{site}/log", timeout=30)
    assert log.headers["Content-Type"].startswith("text/plain")
    assert f"serving {site} with" in log.text, log.text[-500:]

    h = Host.open(host.root)
    before = last_backups(h.backup_results).get(site, 0)
    assert act("backup").status_code == 303
    wait_for("the backup made", lambda: last_backups(h.backup_results).get(site, 0) > before,
             timeout=300)
    assert state() == "sleeping"                # a backup does not wake the site


@pytest.mark.slow
def test_a_person_wakes_a_site_on_the_page_and_needs_the_password(host, kserver, cosi_sites):
    """Chromium: the page shows a site asleep; a click on its "wake" shows it awake
    (after the page's redirect, reloaded until its worker is ready); with a password
    set, the page without it is refused."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from test_browser import Browser
    site = sorted(cosi_sites.values())[0]
    page = kserver.base + "/_linohost/"
    put_to_sleep(host, site)
    b = Browser("status-page")
    try:
        b.get(page)
        row = lambda: b.driver.find_element(By.XPATH, f"//tr[td[1]='{site}']")  # noqa: E731
        before = row()
        assert before.find_elements(By.TAG_NAME, "td")[1].text == "sleeping"
        b.click((By.XPATH, f"//tr[td[1]='{site}']//button[normalize-space()='wake']"),
                "the wake button")
        b.until(EC.staleness_of(before), "the page again, after the action")

        def awake(driver):
            if row().find_elements(By.TAG_NAME, "td")[1].text == "running":
                return True
            driver.refresh()
            return False
        b.until(awake, f"{site} shown running")
        b.shot("woken")
        h = Host.open(host.root)
        access.write_password(h, "pw for test")
        try:
            b.requests.clear()
            b.get(page)
            assert not b.driver.find_elements(By.XPATH, f"//td[text()='{site}']")
            assert [r["status"] for r in b.collect() if r["url"] == page][-1:] == [401]
        finally:
            access.password_file(h).unlink()
    finally:
        b.quit()
