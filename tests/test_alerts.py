"""Alerts by mail from the keeper (keeper/alerts.py) to a real SMTP server (aiosmtpd):
each subject once an hour, not once per look."""

import email
import email.policy
import time

import pytest
import requests

from hoststate import wait_for
from runner import host_config
from serving import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inbox():
    """An SMTP server on 127.0.0.1: (its port, the messages it received)."""
    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(email.message_from_bytes(envelope.content,
                                                           policy=email.policy.default))
            return "250 OK"

    handler = Keep()
    c = Controller(handler, hostname="127.0.0.1", port=free_port())
    c.start()
    yield c.port, handler.messages
    c.stop()


def about(messages, text):
    return [m for m in messages if text in m["Subject"]]    # (unfolded: policy.default)


def test_a_failing_site_its_backup_and_a_full_disk_are_mailed_once(host, kserver, inbox):
    port, messages = inbox
    name = host.unique("alert")
    host("new", name, "--app", "cosi")
    settings = host.root / name / "settings.py"
    good = settings.read_text()
    url = kserver.url(name)
    try:
        with host_config(host, **{"admin_email": "ops@example.test", "mail.host": "127.0.0.1",
                                  "mail.port": port, "mail.security": "none",
                                  "alerts.min_free_disk": 10 ** 9}):
            settings.write_text(good + "raise RuntimeError('broken on purpose')\n")

            def alerted():          # each request after the backoff is one more failed start
                requests.get(url, timeout=300)
                return about(messages, f"{name} fails to start")
            [mail] = wait_for("the alert of a site that fails to start", alerted,
                              timeout=120, every=1)
            assert mail["To"] == "ops@example.test"
            assert mail["From"].startswith("noreply+linohost@")
            body = mail.get_content()
            assert "broken on purpose" in body and f"linohost logs {name}" in body
            wait_for("the disk alert", lambda: about(messages, "is nearly full"), timeout=60)
            # its (nightly) backup fails too: Lino's dump cannot start the site
            assert host("backup", name, check=False).returncode != 0
            [mail] = wait_for("the backup alert", lambda: about(messages, f"{name}: its backup "
                                                                          f"failed"), timeout=60)
            assert any(w in mail.get_content() for w in ("broken on purpose", "dump2py"))
            deadline = time.monotonic() + 35       # more failures, more looks: no more mail
            while time.monotonic() < deadline:
                requests.get(url, timeout=300)
                time.sleep(1)
            assert len(about(messages, f"{name} fails to start")) == 1
            assert len(about(messages, "is nearly full")) == 1, \
                [m["Subject"] for m in messages]
            assert len(about(messages, "its backup failed")) == 1
    finally:
        settings.write_text(good)
        wait_for("the repaired site", lambda: requests.get(url, timeout=300).status_code == 200,
                 timeout=120, every=1)
        host("rm", name, "--yes", "--no-archive")
