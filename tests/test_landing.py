"""The landing page beyond a screenful: headless Chromium finds sites on it.

The page is rendered by the renderer `serve` and `config apache` use, for 130 sites
and for 50, and served as the static file it is (Apache serves it so too; a small
Python server here: 130 sites would take minutes to make). No site runs.
"""

import functools
import http.server
import threading
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from linohost.render.apache import LANDING_PAGE, Mount, index_html
from test_browser import WAIT, Chromium

pytestmark = pytest.mark.slow


def _mounts(n, port):
    titles = {77: "Ödland-Verein Eupen", 121: "Lino Noi: tickets"}
    return [Mount(name=f"site{i:03d}", title=titles.get(i, f"Cosi demo {i}"),
                  url=f"http://127.0.0.1:{port}/site{i:03d}/", url_path=f"/site{i:03d}",
                  server_names=(), project="", wsgi="", media="", static="",
                  python_home="") for i in range(n)]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A server of two landing pages: /many/ (130 sites) and /few/ (one page full)."""
    d = tmp_path_factory.mktemp("landing")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = httpd.server_address[1]
    for sub, n in (("many", 130), ("few", LANDING_PAGE)):
        (d / sub).mkdir()
        (d / sub / "index.html").write_text(index_html(_mounts(n, port), "localhost"))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def driver():
    d = Chromium()
    yield d
    d.quit()


def visible(driver):
    """Names of the sites the page shows now."""
    return [r.find_element(By.TAG_NAME, "a").text
            for r in driver.find_elements(By.CSS_SELECTOR, "#sites tr") if r.is_displayed()]


def shown(driver):
    return driver.find_element(By.ID, "shown").text


def test_many_sites_come_in_pages(driver, pages):
    driver.get(pages + "/many/")
    assert visible(driver) == [f"site{i:03d}" for i in range(50)]
    assert shown(driver) == "sites 1-50 of 130 (page 1 of 3)"
    assert not driver.find_element(By.ID, "prev").is_enabled()
    driver.find_element(By.ID, "next").click()
    driver.find_element(By.ID, "next").click()
    assert visible(driver) == [f"site{i:03d}" for i in range(100, 130)]
    assert shown(driver) == "sites 101-130 of 130 (page 3 of 3)"
    assert not driver.find_element(By.ID, "next").is_enabled()
    assert driver.current_url.endswith("/many/?p=3")
    driver.refresh()                                   # the address keeps the page
    assert visible(driver)[0] == "site100"


def test_a_search_finds_sites_by_name_and_title(driver, pages):
    driver.get(pages + "/many/")
    q = driver.find_element(By.ID, "q")
    q.send_keys("site12")
    assert visible(driver) == [f"site{i}" for i in range(120, 130)]
    assert shown(driver) == "sites 1-10 of 10 found (page 1 of 1)"
    q.clear()
    q.send_keys("noi TICKETS")                         # every word, any case, the title
    assert visible(driver) == ["site121"]
    q.clear()
    q.send_keys("no such site")
    assert visible(driver) == [] and shown(driver) == "no site found"
    driver.get(pages + "/many/?q=" + quote("ödland"))  # the address keeps the words
    assert visible(driver) == ["site077"]
    driver.find_element(By.ID, "q").send_keys(Keys.ENTER)    # one found: Enter opens it
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url.endswith("/site077/"))


def test_one_page_full_is_listed_as_before(driver, pages):
    driver.get(pages + "/few/")
    assert len(visible(driver)) == LANDING_PAGE
    assert not driver.find_elements(By.ID, "q")


def test_without_javascript_every_site_is_listed(pages):
    d = Chromium(prefs={"profile.managed_default_content_settings.javascript": 2})
    try:
        d.get(pages + "/many/")
        assert len(visible(d)) == 130
        assert not d.find_element(By.ID, "find").is_displayed()
    finally:
        d.quit()
