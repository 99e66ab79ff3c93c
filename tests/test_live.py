"""Noi live: the notifications of a site with channels reach its users' websockets
through the web server, under a URL prefix, from the site's worker and from any other
process of the site; a sleeping site is not woken by a browser that reconnects; a
killed worker loses nothing; two sites on one Redis never see each other's messages."""

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
import websocket

from hoststate import status, wait_for
from runner import host_config
from test_browser import browser, react_sign_in  # noqa: F401 (a fixture)
from test_keeper import put_to_sleep

pytestmark = pytest.mark.slow

#: Sends a notification to USER from a process of the site other than its worker.
NOTIFY = """
import datetime
from lino.api import rt
from lino.modlib.notify.api import send_notification
user = rt.models.users.User.objects.get(username=USERNAME)
for i in range(COUNT):
    send_notification(user=user, primary_key=i, subject=f"live {i}", body="b",
                      created=datetime.datetime.now(), action_url="/")
print("SENT")
"""


@pytest.fixture(scope="module")
def noi_sites(host):
    """Two Noi demo sites (channels on, as Noi has it) under URL prefixes."""
    names = [host.unique("live"), host.unique("live")]
    for name in names:
        host("new", name, "--app", "noi")
    yield names
    for name in names:
        host("rm", name, "--yes", "--no-archive", check=False)


def signed_in(base, username="robin"):
    """A requests session signed in as *username* to the site at URL *base*."""
    s = requests.Session()
    s.get(base, timeout=300)                            # its CSRF cookie, as a browser
    r = s.post(base + "api/about/About/-99998",
               data={"an": "sign_in", "username": username, "password": "1234"},
               headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": base}, timeout=300)
    assert r.status_code == 200 and r.json().get("success"), r.text[:300]
    return s


def connect(server, name, session, timeout=10):
    """A websocket at /NAME/WS/ with *session*'s cookies, as the browser opens it."""
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/{name}/WS/", cookie=cookie, timeout=timeout,
        origin=server.base)


def notify(host, name, username="robin", count=1):
    """Send *count* notifications to *username* of *name* from `linohost manage`."""
    script = NOTIFY.replace("USERNAME", repr(username)).replace("COUNT", str(int(count)))
    out = host("manage", name, "--", "shell", "-c", script)
    assert "SENT" in out.stdout


def received(ws, within, count=None):
    """The notifications (their subjects) *ws* receives in *within* seconds (or until
    *count* came)."""
    out = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0 and len(out) != count:
        ws.settimeout(left)
        try:
            data = json.loads(ws.recv())
        except (websocket.WebSocketTimeoutException, TimeoutError):
            break
        out.append(data.get("subject"))
    return out


def test_a_notification_from_another_process_reaches_the_websocket(host, kserver, noi_sites):
    name = noi_sites[0]
    session = signed_in(kserver.url(name))
    ws = connect(kserver, name, session)
    try:
        notify(host, name)
        got = received(ws, 10, 1)
        assert got == ["live 0"], got
        # `status` counts the open websocket and the channel messages of the worker.
        row = wait_for("the worker's live counts", lambda: (
            lambda r: r["websockets"] == 1 and r)(status(host)[name]), timeout=10)
        assert row["state"] == "running" and row["channel_messages"] is not None
        assert "1 ws" in host("status", name).stdout
    finally:
        ws.close()
    wait_for("the websocket counted closed", lambda: status(host)[name]["websockets"] == 0,
             timeout=10)


def test_notifications_of_one_site_never_reach_another(host, kserver, noi_sites):
    """Both sites on one Redis, the same user (robin, the same id in both)."""
    a, b = noi_sites
    ws_a = connect(kserver, a, signed_in(kserver.url(a)))
    ws_b = connect(kserver, b, signed_in(kserver.url(b)))
    try:
        notify(host, b, count=2)
        assert received(ws_b, 10, 2) == ["live 0", "live 1"]
        assert received(ws_a, 3) == []
    finally:
        ws_a.close()
        ws_b.close()


def test_a_websocket_of_a_sleeping_site_waits_and_wakes_nothing(host, kserver, noi_sites):
    """The site asleep: a browser's websocket is answered by the keeper's porch without
    a worker and stays open; it wakes nothing. An HTTP request wakes the site, and the
    same websocket (no reconnect) gets the site's notifications."""
    name = noi_sites[1]
    with host_config(host, **{"keeper.idle_timeout": 3}):
        time.sleep(1.5)                             # the keeper reads it every second
        put_to_sleep(host, name)                    # its next worker leaves after 3 s
        session = signed_in(kserver.url(name))
        ws = connect(kserver, name, session)
        # The open websocket does not keep the site awake: the worker leaves, closes it.
        wait_for("the site to sleep", lambda: status(host)[name]["state"] == "sleeping",
                 timeout=60)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError,
                            OSError)):
            ws.settimeout(10)
            while True:
                ws.recv()
        cold = status(host)[name]["cold_starts"]
        ws = connect(kserver, name, session)        # as the tab reconnects
        try:
            assert received(ws, 8) == []            # open, silent, and nothing woke
            row = status(host)[name]
            assert (row["state"], row["cold_starts"]) == ("sleeping", cold), row
            assert row["websockets_waiting"] == 1, row
            assert "1 waiting" in host("status", name).stdout
            # One HTTP request wakes it; the waiting websocket is the worker's now.
            assert session.get(kserver.url(name), timeout=300).status_code == 200
            wait_for("the websocket handed to the worker", lambda: (
                lambda r: r["websockets"] == 1 and r["websockets_waiting"] == 0)(
                    status(host)[name]), timeout=10)
            notify(host, name)
            assert received(ws, 10, 1) == ["live 0"]
        finally:
            ws.close()


def test_a_killed_worker_loses_no_notification(host, kserver, noi_sites):
    """Its websockets close; the stored notifications stay; the next request starts
    a worker and the websocket works again."""
    name = noi_sites[0]
    session = signed_in(kserver.url(name))
    ws = connect(kserver, name, session)
    notify(host, name, count=3)
    assert received(ws, 10, 3) == ["live 0", "live 1", "live 2"]
    stored = _messages(host, name)
    pid = status(host)[name]["pid"]
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        ws.settimeout(10)
        while ws.recv():
            pass
    assert _messages(host, name) == stored
    assert_live_again(host, kserver, name, session)
    assert status(host)[name]["pid"] != pid


#: Runs keeper/unheard.py (its source: WRAPPED) on the site's own channel layer
#: (channels_redis on the test machine's Redis), as the worker does, with a clock of
#: its own; prints what each channel received.
UNHEARD = """
import asyncio, types, uuid
from channels.layers import get_channel_layer
unheard = types.ModuleType("unheard")
exec(SOURCE, unheard.__dict__)
now = [0.0]

async def got(layer, channel, within=1.0):
    try:
        return (await asyncio.wait_for(layer.receive(channel), within))["n"]
    except asyncio.TimeoutError:
        return None

async def main():
    layer = get_channel_layer()
    if WRAPPED:
        unheard.Unheard(layer, clock=lambda: now[0])
    group, out = "unheard-" + uuid.uuid4().hex[:8], []
    await layer.group_send(group, {"type": "note", "n": 1})      # nobody there
    first = await layer.new_channel()
    await layer.group_add(group, first)
    out.append(await got(layer, first))
    await layer.group_send(group, {"type": "note", "n": 2})      # heard at once
    out.append(await got(layer, first))
    second = await layer.new_channel()
    await layer.group_add(group, second)
    out.append(await got(layer, second, 0.5))                   # nothing again
    await layer.group_discard(group, first)
    await layer.group_discard(group, second)
    await layer.group_send(group, {"type": "note", "n": 3})      # too old when
    now[0] += unheard.KEEP_FOR + 1                              # one joins
    third = await layer.new_channel()
    await layer.group_add(group, third)
    out.append(await got(layer, third, 0.5))
    await layer.group_discard(group, third)
    print("GOT", out)

asyncio.run(main())
"""


@pytest.mark.parametrize("wrapped, expected", [
    (True, [1, 2, None, None]),
    (False, [None, 2, None, None]),         # channels alone drops the first
])
def test_a_message_nobody_heard_reaches_the_first_to_join(host, kserver, noi_sites,
                                                          wrapped, expected):
    """What a just-woken worker sends before the porch's websockets joined their groups
    (keeper/unheard.py): kept for the first that joins; not kept when one is there; not
    given twice; dropped when old."""
    from linohost.keeper import unheard
    source = Path(unheard.__file__).read_text()
    script = (UNHEARD.replace("SOURCE", repr(source)).replace("WRAPPED", repr(wrapped)))
    out = host("manage", noi_sites[0], "--", "shell", "-c", script).stdout
    assert f"GOT {expected}" in out, out


def assert_live_again(host, server, name, session):
    """An HTTP request wakes *name*; then its websocket connects and gets a notification."""
    assert session.get(server.url(name), timeout=300).status_code == 200
    ws = connect(server, name, session)
    try:
        notify(host, name)
        assert received(ws, 10, 1) == ["live 0"]
    finally:
        ws.close()


def _messages(host, name):
    out = host("manage", name, "--", "shell", "-c",
               "from lino.api import rt; print('N', rt.models.notify.Message.objects.count())")
    return int(out.stdout.split("N ")[1].split()[0])


# -- what a person sees ------------------------------------------------------------

#: A site's own plugin settings: React opens its notifications' websocket only with
#: this (in lino.ini: Lino reads it before it makes its models).
PUSH_API = "[notify]\nuse_push_api = true\n"


@pytest.fixture(scope="module")
def push_site(host):
    """A Noi site whose React front end opens the websocket (its own settings)."""
    name = host.unique("livepush")
    host("new", name, "--app", "noi")
    (host.root / name / "lino.ini").write_text(PUSH_API)
    yield name
    host("rm", name, "--yes", "--no-archive", check=False)


def test_a_site_with_a_lino_ini_of_its_own_starts_warm(host, kserver, push_site):
    """Its lino.ini (plugin settings, read before Lino makes its models) puts it in a
    group of its own: a zygote with the same lino.ini forks its worker, exactly (no
    plain start); a changed lino.ini is a changed site (a new worker)."""
    def own_zygote():
        rows = json.loads(host("status", "--zygotes", "--json").stdout)
        return next((r for r in rows if r["own_ini"] and r["state"] == "ready"), None)
    wait_for("a zygote with the site's lino.ini", own_zygote, timeout=600, every=1)
    put_to_sleep(host, push_site)
    assert requests.get(kserver.url(push_site), timeout=300).status_code == 200
    row = status(host)[push_site]
    assert (row["start"], row["plain_reason"]) == ("zygote", None), row
    pid = row["pid"]
    ini = host.root / push_site / "lino.ini"
    ini.write_text(ini.read_text() + "\n")
    wait_for("a new worker after lino.ini changed",
             lambda: status(host)[push_site]["pid"] != pid, timeout=60)


class Sockets:
    """The page's websockets, from Chromium's performance log: {request id: url},
    those signed in (their handshake sent a session cookie), the frames received."""

    def __init__(self, b):
        self.b, self.urls, self.signed_in, self.frames = b, {}, set(), []

    def read(self):
        for entry in self.b.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            p = msg["params"]
            if msg["method"] == "Network.webSocketCreated":
                self.urls[p["requestId"]] = p["url"]
            elif msg["method"] == "Network.webSocketWillSendHandshakeRequest":
                if "sessionid=" in p["request"]["headers"].get("Cookie", ""):
                    self.signed_in.add(p["requestId"])
            elif msg["method"] == "Network.webSocketHandshakeResponseReceived":
                if p["response"]["status"] != 101:
                    self.signed_in.discard(p["requestId"])
            elif msg["method"] == "Network.webSocketFrameReceived":
                self.frames.append((p["requestId"], p["response"]["payloadData"]))
        return self


def test_a_signed_in_page_shows_a_notification_at_once(host, kserver, push_site, browser):
    """React under the prefix: its websocket goes to /SITE/WS/ (never /WS/), and a
    notification made by another process reaches the page within 2 s, where React
    handles it (its log: "Received message")."""
    name = push_site
    b = browser("live", console=True)
    origin = f"http://127.0.0.1:{kserver.port}"
    b.driver.execute_cdp_cmd("Browser.grantPermissions",
                             {"origin": origin, "permissions": ["notifications"]})
    b.get(kserver.url(name))
    react_sign_in(b)
    sockets = Sockets(b)
    wait_for("a signed-in websocket", lambda: sockets.read().signed_in, timeout=60)
    ws_url = f"ws://127.0.0.1:{kserver.port}/{name}/WS/"
    assert set(sockets.urls.values()) == {ws_url}, sockets.urls
    b.driver.get_log("browser")                     # what the page logged so far
    notify(host, name, count=1)
    done = time.monotonic()
    got = []
    while not got and time.monotonic() < done + 2:
        got = [f for rid, f in sockets.read().frames
               if rid in sockets.signed_in and '"live 0"' in f]
        time.sleep(0.1)
    b.shot("notified")
    assert got, f"the page's websocket got no notification within 2 s: {sockets.frames}"
    logged = [e["message"] for e in b.driver.get_log("browser")]
    assert any("Received message" in m for m in logged), logged
    assert not any("onDenied" in m for m in logged), logged


#: Makes user OBSERVER a member of a group (Noi tells a group's members of the comments
#: in it; of a ticket's comments it tells its voters and starrers, plugins this Noi
#: does not install); prints the group, the content type of groups, and how Lino
#: greets the user.
OBSERVE = """
from django.contrib.contenttypes.models import ContentType
from lino.api import rt
from lino.modlib.notify.choicelists import MailModes
Group, Membership = rt.models.groups.Group, rt.models.groups.Membership
user = rt.models.users.User.objects.get(username=OBSERVER)
if user.mail_mode == MailModes.silent:
    user.mail_mode = MailModes.often
    user.save()
member = Membership.objects.filter(user=user).order_by("group_id").first()
if member is None:
    member = Membership(user=user, group=Group.objects.order_by("id").first())
    member.full_clean()
    member.save()
print("OBSERVE", member.group.pk, ContentType.objects.get_for_model(Group).pk,
      "|" + str(user))
"""

#: Records the desktop notifications a page shows (what a person sees of a push).
SHOWN = """
window.__shown = [];
const Shown = window.Notification;
window.Notification = function (title, options) {
    window.__shown.push({title: title, body: (options || {}).body,
                         icon: (options || {}).icon, at: Date.now()});
    return new Shown(title, options);
};
Object.assign(window.Notification, Shown);
Object.defineProperty(window.Notification, "permission", {get: () => Shown.permission});
window.Notification.requestPermission = (...a) => Shown.requestPermission(...a);
"""


def test_one_user_comments_and_another_sees_it_at_once(host, kserver, push_site, browser):
    """Two users of one Noi site: B (jean) has the site open in Chromium, signed in; A
    (robin) comments in a group of B's, through the site's JSON API. Within 2 s of
    A's answer, without a reload, B's page shows the desktop notification "Robin Rood
    commented on ...", each of 5 times (latencies printed)."""
    name = push_site
    out = host("manage", name, "--", "shell", "-c",
               OBSERVE.replace("OBSERVER", repr("jean"))).stdout
    group, ctype, greeting = out.split("OBSERVE ", 1)[1].split("|", 1)[0].split() + [
        out.split("|", 1)[1].splitlines()[0]]
    b = browser("live-b", console=True)
    origin = f"http://127.0.0.1:{kserver.port}"
    b.driver.execute_cdp_cmd("Browser.grantPermissions",
                             {"origin": origin, "permissions": ["notifications"]})
    b.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SHOWN})
    base = kserver.url(name)
    b.get(base)
    react_sign_in(b, "jean", greeting)
    sockets = Sockets(b)
    wait_for("B's signed-in websocket", lambda: sockets.read().signed_in, timeout=60)
    a = signed_in(base, "robin")

    def comment_and_see(text):
        """A comments *text*; B's page shows it within 2 s: (what it showed, when A
        sent it, when A's answer came back: the comment and its notification exist)."""
        sent = time.time()
        r = a.post(base + "api/comments/CommentsByRFC",
                   data={"an": "submit_insert", "mt": ctype, "mk": group, "body": text},
                   headers={"X-CSRFToken": a.cookies["csrftoken"], "Referer": base},
                   timeout=120)
        assert r.status_code == 200 and r.json().get("success"), r.text[:300]
        made = time.time()
        notes = wait_for(f"B's page to show {text!r}", lambda: [
            n for n in b.driver.execute_script("return window.__shown")
            if text in (n["body"] or "")], timeout=2, every=0.05)
        return notes, sent, made

    latencies = []
    for i in range(5):
        notes, sent, made = comment_and_see(f"Comment {i} of robin for jean")
        latencies.append((notes[0]["at"] / 1000 - sent, notes[0]["at"] / 1000 - made))
        assert "Robin Rood commented on" in notes[0]["body"], notes
        # Its icon is the site's (React names /static/...: kept inside the prefix).
        assert urlparse(notes[0]["icon"]).path.startswith(f"/{name}/static/"), notes
    b.shot("notified")
    print("\nshown on B's page, after A sent the comment / after A's answer came back: "
          + ", ".join(f"{s * 1000:.0f} / {m * 1000:.0f} ms" for s, m in latencies))
    assert max(m for s, m in latencies) < 2, latencies

    # The site asleep when A comments: B's tab waits at the keeper's porch; A's comment
    # wakes the site, and B sees it as quickly.
    with host_config(host, **{"keeper.idle_timeout": 3}):
        time.sleep(1.5)
        put_to_sleep(host, name)
        wait_for("B's tab waiting at the porch",
                 lambda: status(host)[name]["websockets_waiting"] == 1, timeout=60)
        cold = status(host)[name]["cold_starts"]
        notes, sent, made = comment_and_see("Comment of robin to a sleeping site")
        print(f"asleep when A commented: shown {notes[0]['at'] / 1000 - sent:.2f} s after "
              f"A sent it, {notes[0]['at'] / 1000 - made:.2f} s after A's answer")
        assert status(host)[name]["cold_starts"] == cold + 1


def test_show_says_where_live_features_run(host, server, noi_sites):
    """Under the keeper they run in the site's worker; under mod_wsgi `show` says
    they are off, and the site serves as before."""
    row = json.loads(host("show", noi_sites[0], "--json").stdout)
    if server.backend == "keeper":
        assert "in the site's worker" in row["live"], row["live"]
    else:
        assert row["live"].startswith("off: ") and "keeper" in row["live"], row["live"]
    assert requests.get(server.url(noi_sites[0]), timeout=300).status_code == 200

