"""What a person sees: headless Chromium signs in to sites behind the embedded Apache.

Under URL prefixes of one vhost (http://127.0.0.1:PORT/SITE/), one browser visits
two React sites (the default front end) and one ExtJS site in turn: sign in, a
table, a row's detail, sign out. Every request of each site's part, in the web
server's access log (which, unlike the browser's log, also sees what service
workers fetch), must stay inside the site's prefix and succeed. And React in
domain mode (http://SITE.localhost:PORT/, which Chromium resolves itself).
Chromium's performance log must show no failed request either, none outside the
site. Screenshots are kept under $LINOHOST_ARTEFACTS (default tests/artefacts/).
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.common.exceptions import (ElementClickInterceptedException,
                                        StaleElementReferenceException, TimeoutException,
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from linohost.model.env import Env
from test_adopt import MANAGE

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900"]
#: Seconds for any one page load or wait (a site's first request may import Lino).
WAIT = 60


class Chromium(webdriver.Chrome):
    """A headless Chromium (through chromedriver) whose temporary files (its singleton
    lock, its profile) go into a directory of its own, removed by quit(); *prefs*:
    Chromium's preferences."""

    def __init__(self, prefs=None, logs=None):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in FLAGS:
            opts.add_argument(f)
        if prefs:
            opts.add_experimental_option("prefs", prefs)
        if logs:
            opts.set_capability("goog:loggingPrefs", logs)
        self.tmp = tempfile.mkdtemp(prefix="linohost-chromium-")
        try:
            super().__init__(service=Service(CHROMEDRIVER, env={**os.environ,
                                                                "TMPDIR": self.tmp}),
                             options=opts)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.set_page_load_timeout(WAIT)

    def quit(self):
        try:
            super().quit()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def artefacts():
    d = Path(os.environ.get("LINOHOST_ARTEFACTS") or Path(__file__).parent / "artefacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Browser:
    """One headless Chromium with its performance log, for one site."""

    def __init__(self, label, console=False):
        self.driver = Chromium(logs={"performance": "ALL",
                                     **({"browser": "ALL"} if console else {})})
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
        def looking(driver):
            try:
                return condition(driver)
            except WebDriverException as e:     # the page navigates (signing out): again
                if "navigat" not in (e.msg or ""):
                    raise
                return False

        try:
            # A front end re-renders its grid at will: look again at a stale element.
            return WebDriverWait(self.driver, WAIT, ignored_exceptions=(
                StaleElementReferenceException,)).until(looking)
        except TimeoutException:
            shot = self.shot("failed")
            self.collect()
            bad = [f"{r['status'] or r['error']} {r['url']}" for r in self.requests.values()
                   if (r["status"] or 0) >= 400 or r["error"]]
            pending = [r["url"] for r in self.requests.values() if r.get("url")
                       and not (r["status"] or r["error"] or r.get("canceled"))]
            try:
                text = self.body_text()[:200]
            except WebDriverException as e:
                text = f"({e.msg})"
            raise AssertionError(f"{self.label}: no {what} within {WAIT} s "
                                 f"(screenshot {shot}; failed requests: {bad}; "
                                 f"unanswered: {pending[-5:]}; page: {text!r})") from None

    def click(self, locator, what):
        """Click *locator* once it is clickable and nothing lies over it: a person
        waits until a notification (React's toast) has faded and clicks then, and
        clicks again when the page navigated under the click (a front end that reloads
        itself once its service worker took over)."""
        def clicked(driver):
            try:
                element = EC.element_to_be_clickable(locator)(driver)
                return element and (element.click() or True)
            except ElementClickInterceptedException:
                return False
            except WebDriverException as e:
                if "navigat" in str(e.msg):
                    return False
                raise
        self.until(clicked, what)

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

    def make(label, console=False):
        b = Browser(label, console)
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


def signed_in(b, name="Robin Rood"):
    # The main page greets the user; "Robin Rood" alone is also in a toast or a script.
    return lambda d: f"Hello, {name}!" in b.body_text()


def grid_rows(css):
    return lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, css) if r.text.strip()]


def row_with(css, text):
    """Once the grid shows at least five rows: the one that shows *text*."""
    def find(d):
        rows = grid_rows(css)(d)
        return len(rows) >= 5 and next((r for r in rows if text in r.text), None)
    return find


# -- React and ExtJS under the URL prefixes of one vhost ---------------------

#: The table the browser opens (URL path, menu, menu item) and the row whose detail.
TABLE = ("contacts/Persons", "Contacts", "Persons", "Mr Hans Altenberg")
#: One line of the access log, LogFormat `linohost` of
#: src/linohost/render/templates/apache/httpd.conf.j2: %h %t "%r" %>s %b %D "%{Host}i".
LOG_LINE = re.compile(r'\S+ \[[^\]]*\] "(?P<request>[^"]*)" (?P<status>\d{3}) ')


class AccessLog:
    """The requests the web server answered since a mark, from ROOT/logs/apache-access.log
    (or *name*: nginx-access.log)."""

    def __init__(self, host, name="apache-access.log"):
        self.path = host.root / "logs" / name
        self.offset = 0

    def mark(self):
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self, quiet=2.0):
        """[(method, path, status)] logged since the mark, once the log has been
        still for *quiet* seconds (Apache logs a request when it has answered)."""
        size, still_since = -1, time.monotonic()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            now = self.path.stat().st_size
            if now != size:
                size, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                break
            time.sleep(0.2)
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            m = LOG_LINE.match(line)
            assert m, f"access log line not in the `linohost` format: {line!r}"
            method, _, rest = m["request"].partition(" ")
            out.append((method, rest.rsplit(" ", 1)[0], int(m["status"])))
        return out


def check_access_log(log, label, prefix):
    """Every request the server logged for this part is inside *prefix* and succeeded."""
    logged = log.since_mark()
    assert logged, f"{label}: the access log shows no request"
    print(f"{label}: {len(logged)} requests in the access log")
    outside = [f"{m} {p}" for m, p, s in logged if not p.startswith(prefix)]
    # 499: nginx's note that the browser closed the request before the answer (ExtJS
    # reloads the page after sign-in); check_requests sees the same one as dropped.
    failed = [f"{s} {m} {p}" for m, p, s in logged if s >= 400 and s != 499]
    assert outside == [], f"{label}: requests outside {prefix}: {outside}"
    assert failed == [], f"{label}: failed requests: {failed}"
    return logged


def session_cookie_path(b):
    return {c["name"]: c["path"] for c in b.driver.get_cookies()}.get("sessionid")


def wait_until_served(url):
    deadline = time.monotonic() + WAIT
    while requests.get(url, timeout=WAIT).status_code != 200:
        assert time.monotonic() < deadline, f"{url} does not answer"
        time.sleep(1)


def react_sign_in(b, username="robin", name="Robin Rood", password="1234"):
    """Sign in through React's dialog as *username* (password 1234, as in Lino's demo
    data), greeted as *name*; once more if the page reloaded itself meanwhile (as a
    person would: the dialog they typed into is gone)."""
    for attempt in (1, 2):
        b.click((By.XPATH, "//button[normalize-space()='Sign in']"), "Sign in button")
        dialog = b.until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".p-dialog")),
                         "sign-in dialog")
        try:
            dialog.find_element(By.CSS_SELECTOR, "input:not([type=password])").send_keys(username)
            dialog.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(password)
            dialog.find_element(By.XPATH, ".//button[normalize-space()='OK']").click()
            break
        except (StaleElementReferenceException, WebDriverException) as e:
            if attempt == 2 or not isinstance(e, StaleElementReferenceException) \
                    and "navigat" not in str(e.msg):
                raise
    b.until(signed_in(b, name), "greeting of the signed-in user")


def react_session(b, base, title=None, password="1234"):
    """Sign in, a table, a row's detail, sign out: as a person does it in React; the
    window shows the site's own *title* (its page cache is shared, see test_pagecache)."""
    table, menu, item, text = TABLE
    b.get(base)
    react_sign_in(b, password=password)
    b.shot("main")
    if title:
        b.until(lambda d: d.title == title, f"the window title {title!r}")
    assert session_cookie_path(b) == urlparse(base).path[:-1]
    b.get(base + f"#/api/{table}")
    row = b.until(row_with(".p-datatable tbody tr", text), f"rows of {table} with {text}")
    b.shot("table")
    row.find_element(By.CSS_SELECTOR, "[title^='Open detail']").click()      # its "↗"
    b.until(lambda d: re.search(rf"#/api/{table}/\d+", d.current_url), "detail of a row")
    b.until(lambda d: f"{item} » {text}" in b.body_text(), f"detail of {text}")
    b.shot("detail")
    b.click((By.XPATH, "//button[normalize-space()='👤']"), "user menu")
    b.click((By.XPATH, "//button[normalize-space()='Sign out']"), "Sign out")
    b.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Sign in']")),
            "Sign in button after signing out")
    b.shot("signed-out")


def extjs_sign_in(b):
    b.click((By.XPATH, "//button[normalize-space()='Sign in']"), "Sign in button")
    b.until(EC.visibility_of_element_located((By.NAME, "username")),
            "sign-in dialog").send_keys("robin")
    b.driver.find_element(By.NAME, "password").send_keys("1234", Keys.ENTER)
    b.until(signed_in(b), "greeting of the signed-in user")


def extjs_session(b, base):
    """Sign in, a table, a row's detail, sign out: as a person does it in ExtJS."""
    table, menu, item, text = TABLE
    b.get(base)
    extjs_sign_in(b)
    b.shot("main")
    assert session_cookie_path(b) == urlparse(base).path[:-1]
    b.click((By.XPATH, f"//button[normalize-space()='{menu}']"), f"{menu} menu")
    b.click((By.XPATH, f"//*[contains(@class,'x-menu-item-text') and normalize-space()='{item}']"),
            f"{item} menu item")
    row = b.until(row_with(".x-grid3-row", text), f"rows of {table} with {text}")
    b.shot("table")
    ActionChains(b.driver).double_click(row).perform()
    b.until(EC.visibility_of_element_located(
        (By.XPATH, f"//*[contains(@class,'-header-text') and .='{item} » {text}']")),
        f"detail of {text}")
    b.shot("detail")
    # The alert ExtJS shows when the JS cache and the site disagree (see siteinit.py).
    assert "Version mismatch" not in b.body_text()
    b.click((By.XPATH, "//button[normalize-space()='Robin Rood']"), "user menu")
    b.click((By.XPATH, "//*[contains(@class,'x-menu-item-text') and normalize-space()='Sign out']"),
            "Sign out")
    b.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Sign in']")),
            "Sign in button after signing out")
    b.shot("signed-out")


def active_service_worker(b):
    """The script URL of the page's service worker, once it is active (it fetches
    its files when it installs: those requests belong to this site's part)."""
    return b.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (!navigator.serviceWorker) { done(null); return; }
        navigator.serviceWorker.getRegistration().then(reg => {
            if (!reg) { done(null); return; }
            navigator.serviceWorker.ready.then(r => done(r.active && r.active.scriptURL));
        });""")


@pytest.fixture(scope="module")
def prefix_sites(host, cosi_sites):
    """Three Cosi sites under URL prefixes of one vhost: {name: front end}. Two are
    new with the default front end (React); the ExtJS one is cosi_sites' SQLite site."""
    sites = {}
    for db in ("sqlite", "postgresql"):
        name = host.unique(f"react_{db[:2]}")
        host("new", name, "--app", "cosi", "--db", db, "--title", f"React on {db}")
        sites[name] = json.loads(host("show", name, "--json").stdout)["front_end"]
    assert set(sites.values()) == {"react"}, f"not React by default under a prefix: {sites}"
    sites[cosi_sites["sqlite"]] = "extjs"
    yield sites
    for name in list(sites)[:2]:
        host("rm", name, "--yes", "--no-archive")


def test_react_and_extjs_sites_under_prefixes_of_one_vhost(host, server, prefix_sites,
                                                           browser):
    log = AccessLog(host)
    b = browser("prefix")
    for site, front_end in prefix_sites.items():
        base = server.url(site)                                # http://127.0.0.1:PORT/SITE/
        prefix = urlparse(base).path                           # /SITE/
        wait_until_served(base)      # sites made after `serve` started come after a reload
        b.label = f"prefix-{front_end}-{site}"
        b.requests.clear()
        log.mark()
        if front_end == "react":
            react_session(b, base, json.loads(host("show", site, "--json").stdout)["title"])
        else:
            extjs_session(b, base)
        # Both front ends register one; ExtJS's own line asks for /service-worker.js.
        worker = active_service_worker(b)
        assert worker and urlparse(worker).path == prefix + "service-worker.js", worker
        check_requests(b, lambda url: url.startswith(base))
        logged = check_access_log(log, b.label, prefix)
        assert any(p.startswith(prefix + "api/") for m, p, s in logged)


def test_react_site_on_its_own_host_name(server, domain_sites, browser):
    site = next(iter(domain_sites))
    base = server.url(f"{site}.localhost")                 # http://SITE.localhost:PORT/
    netloc = urlparse(base).netloc
    wait_until_served(base)     # its Lino loaded (under mod_wsgi at its first request)
    b = browser(f"domain-react-{site}")
    b.get(base)
    react_sign_in(b)
    b.shot("main")
    assert {c["name"] for c in b.driver.get_cookies()} >= {"sessionid"}

    b.get(base + "#/api/contacts/Persons")
    rows = b.until(lambda d: len(grid_rows(".p-datatable tbody tr")(d)) >= 5
                   and grid_rows(".p-datatable tbody tr")(d), "rows of the Persons table")
    assert any("Altenberg" in r.text for r in rows), [r.text for r in rows[:5]]
    b.shot("persons")
    check_requests(b, lambda url: urlparse(url).netloc == netloc)


# -- a site adopted from a project linohost did not make ----------------------------------

#: The settings of a Lino project of its own (React, as linohost's demo sites).
ADOPTED_SETTINGS = """from lino_cosi.lib.cosi.settings import *


class Site(Site):
    title = "Adopted in Chromium"
    default_ui = "lino_react.react"
    languages = "en"

    def get_installed_plugins(self):        # one Cosi does not have: the site's own
        yield super().get_installed_plugins()
        yield "lino_xl.lib.addresses"


SITE = Site(globals())
SECRET_KEY = "a key of the project's own, at least fifty characters long, as Django asks"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": str(SITE.site_dir / "default.db")}}
"""
#: robin's own password in the project (not the demo data's 1234).
OWN_PASSWORD = "robin's own 42"


@pytest.fixture(scope="module")
def adopted_site(host, domain_sites):
    """A project of its own beside the session's environment, its database a copy of a
    React Cosi demo site's with robin's password changed, adopted: the site's name."""
    base = Path(tempfile.mkdtemp(prefix="linohost-own-"))
    name = host.unique("adb")
    try:                        # (a failed adoption leaves neither project nor site)
        base.chmod(0o755)
        env = Env.load(host.root / "envs" / "default" / Env.FILENAME)
        (base / "env").symlink_to(env.path)
        project = base / "own"
        (project / "media").mkdir(parents=True)
        (project / "manage.py").write_text(MANAGE)
        (project / "settings.py").write_text(ADOPTED_SETTINGS)
        demo = host.root / next(iter(domain_sites)) / "default.db"
        src = sqlite3.connect(f"file:{demo}?mode=ro", uri=True)
        dst = sqlite3.connect(project / "default.db")
        src.backup(dst)
        src.close(), dst.close()
        for args in (["migrate", "--run-syncdb"],            # its own plugin's table
                     ["shell", "-c", "from lino.api import rt; u = rt.models.users.User."
                      f"objects.get(username='robin'); u.set_password({OWN_PASSWORD!r}); "
                      "u.save()"]):
            subprocess.run([env.bin_python, "manage.py", *args], cwd=project, check=True,
                           capture_output=True, timeout=300)
        host("adopt", project, "--as", name, "--yes", timeout=1800)
        assert json.loads(host("show", name, "--json").stdout)["plugins"] == \
            ["lino_xl.lib.addresses"]
        yield name
    finally:
        host("rm", name, "--yes", "--no-archive", check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_a_user_of_an_adopted_site_signs_in_with_the_password_they_had(server, adopted_site,
                                                                      browser):
    base = server.url(adopted_site)
    wait_until_served(base)
    b = browser(f"adopted-{adopted_site}")
    react_session(b, base, "Adopted in Chromium", password=OWN_PASSWORD)
    check_requests(b, lambda url: url.startswith(base))
