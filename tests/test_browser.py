"""What a person sees: headless Chromium signs in to a site behind the embedded Apache.

Prefix mode with the ExtJS front end (the one that works under a URL prefix) and
domain mode with React, each reached the way a browser reaches it
(http://127.0.0.1:PORT/SITE/ and http://SITE.localhost:PORT/, which Chromium
resolves itself). Every request the page makes is taken from Chromium's
performance log: none may fail, and under a prefix none may leave it.
Screenshots are kept under $LINOHOST_ARTEFACTS (default tests/artefacts/).
"""

import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from leftovers import assert_one_error_line, assert_site_absent, snapshot

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900"]
#: Seconds for any one page load or wait (a site's first request may import Lino).
WAIT = 60
#: ExtJS's index.html registers a service worker at a hard-coded root path
#: (`navigator.serviceWorker.register('/service-worker.js')`), outside every prefix;
#: Apache answers 404 and the page works without it (cosmetic, see
#: ../shared/research/prefix-frontends.md). The only request allowed to fail or leave.
SERVICE_WORKER = "/service-worker.js"


def artefacts():
    d = Path(os.environ.get("LINOHOST_ARTEFACTS") or Path(__file__).parent / "artefacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Browser:
    """One headless Chromium with its performance log, for one site."""

    def __init__(self, label):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in FLAGS:
            opts.add_argument(f)
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)
        self.label = label
        self.requests = {}          # requestId -> {"url", "type", "status", "error"}
        self.shots = []

    def quit(self):
        self.driver.quit()

    def get(self, url):
        self.driver.get(url)

    def until(self, condition, what):
        """Wait (bounded) for *condition*; on timeout keep a screenshot and say what failed."""
        try:
            return WebDriverWait(self.driver, WAIT).until(condition)
        except TimeoutException:
            shot = self.shot("failed")
            self.collect()
            bad = [f"{r['status'] or r['error']} {r['url']}" for r in self.requests.values()
                   if (r["status"] or 0) >= 400 or r["error"]]
            raise AssertionError(f"{self.label}: no {what} within {WAIT} s "
                                 f"(screenshot {shot}; failed requests: {bad})") from None

    def body_text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def shot(self, step):
        path = artefacts() / f"{self.label}-{len(self.shots) + 1}-{step}.png"
        self.driver.save_screenshot(str(path))
        self.shots.append(path)
        print(f"screenshot: {path}")
        return path

    def collect(self):
        """Move the performance log's network events into self.requests."""
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            p = msg.get("params", {})
            rid = p.get("requestId")
            if msg["method"] == "Network.requestWillBeSent":
                r = self.requests.setdefault(rid, {"status": None, "error": None})
                r.update(url=p["request"]["url"], type=p.get("type"), sent=p.get("timestamp"))
                if p.get("redirectResponse"):             # one id per redirect chain
                    r.setdefault("redirects", []).append(p["redirectResponse"]["status"])
            elif msg["method"] == "Network.responseReceived":
                r = self.requests.setdefault(rid, {"error": None, "type": p.get("type")})
                r.update(url=p["response"]["url"], status=p["response"]["status"])
            elif msg["method"] == "Network.loadingFailed":
                r = self.requests.setdefault(rid, {"url": "?", "status": None, "type": None})
                if p.get("canceled"):
                    r["canceled"] = True
                else:
                    r["error"] = p.get("errorText")
        return [r for r in self.requests.values() if r["url"].startswith("http")]


@pytest.fixture
def browser(request):
    made = []

    def make(label):
        b = Browser(label)
        made.append(b)
        return b
    yield make
    for b in made:
        b.quit()


def check_requests(b, allowed):
    """Every http request of *b* got an answer below 400, at a URL *allowed* accepts."""
    reqs = b.collect()
    assert reqs, "the performance log recorded no request"
    print(f"{b.label}: {len(reqs)} requests")
    failed, outside = [], []
    for r in reqs:
        if urlparse(r["url"]).path == SERVICE_WORKER:
            print(f"{b.label}: allowed: {r['status'] or r['error']} {r['url']}")
            continue
        if not allowed(r["url"]):
            outside.append(r["url"])
        if r["status"] is None and not r["error"] and (r.get("canceled") or any(
                d["type"] == "Document" and (d.get("sent") or 0) > (r.get("sent") or 0)
                for d in reqs)):
            # Sent just before a navigation (ExtJS reloads the page after sign-in):
            # the browser dropped it, with or without a "canceled" event.
            print(f"{b.label}: dropped by a navigation: {r['url']}")
            continue
        if r["error"] or r["status"] is None or r["status"] >= 400:
            failed.append(f"{r['status'] or r['error'] or 'no answer'} {r['url']}")
    assert failed == [], f"{b.label}: failed requests: {failed}"
    assert outside == [], f"{b.label}: requests outside the site: {outside}"
    # A version mismatch between the JS cache and the site makes the front end
    # reload the page again and again.
    docs = [r["url"] for r in reqs if r["type"] == "Document"]
    assert len(docs) <= 3, f"{b.label}: the page was loaded {len(docs)} times: {docs}"
    return reqs


def signed_in(b):
    # The main page greets the user; "Robin Rood" alone is also in a toast or a script.
    return lambda d: "Hello, Robin Rood!" in b.body_text()


def grid_rows(css):
    return lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, css) if r.text.strip()]


def test_extjs_site_under_its_prefix(server, cosi_sites, browser):
    site = cosi_sites["sqlite"]
    base = server.url(site)                                # http://127.0.0.1:PORT/SITE/
    b = browser(f"prefix-extjs-{site}")
    b.get(base)
    b.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Sign in']")),
            "Sign in button").click()
    b.until(EC.visibility_of_element_located((By.NAME, "username")),
            "sign-in dialog").send_keys("robin")
    b.driver.find_element(By.NAME, "password").send_keys("1234", Keys.ENTER)
    b.until(signed_in(b), "greeting of the signed-in user")
    b.shot("main")
    cookies = {c["name"]: c for c in b.driver.get_cookies()}
    assert cookies["sessionid"]["path"] == f"/{site}"

    b.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Contacts']")),
            "Contacts menu").click()
    b.until(EC.element_to_be_clickable(
        (By.XPATH, "//*[contains(@class,'x-menu-item-text') and normalize-space()='Persons']")),
        "Persons menu item").click()
    rows = b.until(lambda d: len(grid_rows(".x-grid3-row")(d)) >= 5 and grid_rows(".x-grid3-row")(d),
                   "rows of the Persons table")
    assert any("Altenberg" in r.text for r in rows), [r.text for r in rows[:5]]
    b.shot("persons")
    # The alert ExtJS shows when the JS cache and the site disagree (see siteinit.py).
    assert "Version mismatch" not in b.body_text()
    check_requests(b, lambda url: url.startswith(base))


def test_react_site_on_its_own_host_name(server, domain_sites, browser):
    site = next(iter(domain_sites))
    base = server.url(f"{site}.localhost")                 # http://SITE.localhost:PORT/
    netloc = urlparse(base).netloc
    b = browser(f"domain-react-{site}")
    b.get(base)
    b.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Sign in']")),
            "Sign in button").click()
    dialog = b.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".p-dialog")),
                     "sign-in dialog")
    dialog.find_element(By.CSS_SELECTOR, "input:not([type=password])").send_keys("robin")
    dialog.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("1234")
    dialog.find_element(By.XPATH, ".//button[normalize-space()='OK']").click()
    b.until(signed_in(b), "greeting of the signed-in user")
    b.shot("main")
    assert {c["name"] for c in b.driver.get_cookies()} >= {"sessionid"}

    b.get(base + "#/api/contacts/Persons")
    rows = b.until(lambda d: len(grid_rows(".p-datatable tbody tr")(d)) >= 5
                   and grid_rows(".p-datatable tbody tr")(d), "rows of the Persons table")
    assert any("Altenberg" in r.text for r in rows), [r.text for r in rows[:5]]
    b.shot("persons")
    check_requests(b, lambda url: urlparse(url).netloc == netloc)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_react_under_a_prefix_is_refused_and_leaves_nothing(host, db):
    name = host.unique("reactpfx")
    before = snapshot(host)
    demo = sorted(p.name for p in (host.root / "envs" / "default" / "demo").glob("*"))
    p = host("new", name, "--app", "cosi", "--db", db, "--front-end", "react", check=False)
    line = assert_one_error_line(p, 2, "react", "domain mode")
    print(line)
    assert snapshot(host) == before
    assert sorted(p.name for p in (host.root / "envs" / "default" / "demo").glob("*")) == demo
    assert_site_absent(host, name)
