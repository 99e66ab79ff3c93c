"""Outgoing mail: a real SMTP server (aiosmtpd) receives what a Lino site sends."""

import tomllib

import pytest
import tomli_w

pytestmark = pytest.mark.slow

#: What Lino's linod does every 10 seconds: send the pending notification e-mails.
SEND_PENDING = """
from lino.api import rt
from lino.modlib.notify.choicelists import MailModes
from lino.modlib.notify.models import send_pending_emails_often
u = rt.models.users.User.objects.get(username="robin")
u.email = "robin@mail.test"
u.save()
rt.models.notify.Message.objects.create(
    user=u, subject="Hello from linohost", body="<p>Hello</p>", mail_mode=MailModes.often)
send_pending_emails_often(rt.login("robin"))
"""


@pytest.fixture
def smtp():
    """An SMTP server on 127.0.0.1 that wants user `linohost` with password `s3cret`."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from serving import free_port

    class Keep:
        def __init__(self):
            self.messages, self.logins = [], []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"linohost" and auth_data.password == b"s3cret"
        handler.logins.append((auth_data.login, ok))
        return AuthResult(success=ok)

    handler = Keep()
    c = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                   auth_require_tls=False)
    c.start()
    yield c, handler
    c.stop()


@pytest.fixture(scope="module")
def site(host):
    name = host.unique("mail")
    host("new", name, "--app", "cosi")
    yield name
    host("rm", name, "--yes", "--no-archive", check=False)


def test_a_site_sends_its_pending_mail_from_its_own_address(host, site, smtp, tmp_path):
    controller, received = smtp
    path = host.root / "linohost.toml"
    before = path.read_bytes()
    data = tomllib.loads(before.decode())
    data["mail"] = {"host": "127.0.0.1", "port": controller.port, "security": "none",
                    "user": "linohost"}
    path.write_text(tomli_w.dumps(data))
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    try:
        host("init", "--smtp-password-file", password)
        secret = host.root / "secrets" / "smtp.password"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert "s3cret" not in path.read_text()
        assert "s3cret" not in (host.root / "local" / "djangosite_local.py").read_text()
        host("manage", site, "--", "shell", "-c", SEND_PENDING)
    finally:
        path.write_bytes(before)
        host("init")
    assert received.logins == [(b"linohost", True)]
    [mail] = received.messages
    sender = f"noreply+{site}@localhost"
    assert mail.mail_from == sender
    assert mail.rcpt_tos == ["robin@mail.test"]
    text = mail.content.decode()
    assert f"From: {sender}" in text and "Hello from linohost" in text
