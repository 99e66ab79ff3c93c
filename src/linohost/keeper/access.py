"""Who may read the status page and the metrics (``/_linohost/``).

With a password hash in ``secrets/admin-password`` (written by
:func:`write_password`): HTTP basic auth as user ``admin``; the metrics may also
use the bearer token in ``secrets/metrics-token``. Without a password only the
host itself: the front server's own view of the client (it sets
``X-Forwarded-For`` itself, replacing what a client sent) must be a loopback address.
"""
import base64
import hashlib
import hmac
import ipaddress
import secrets

from ..fs import atomic_write

USER = "admin"
_N, _R, _P = 2 ** 14, 8, 1


def password_file(host):
    return host.secrets_dir / "admin-password"


def token_file(host):
    return host.secrets_dir / "metrics-token"


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(stored, password):
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        wanted = bytes.fromhex(digest)
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt),
                             n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(got, wanted)


def write_password(host, password):
    """Store the hash of *password* (0600)."""
    atomic_write(password_file(host), hash_password(password) + "\n", mode=0o600)


def _read(path):
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


class Gate:
    """Decides for one request (a WSGI environ); reads the secrets at each request,
    so a new password counts without a restart."""

    def __init__(self, host):
        self.host = host

    def allows(self, environ, metrics=False):
        stored = _read(password_file(self.host))
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if metrics and auth.startswith("Bearer "):
            token = _read(token_file(self.host))
            return token is not None and hmac.compare_digest(
                auth[len("Bearer "):].encode(), token.encode())
        if stored is None:
            return _loopback(environ.get("HTTP_X_FORWARDED_FOR", ""))
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == USER and check_password(stored, password)


def _loopback(forwarded):
    """True if the client the front server saw is this host. The front server
    *sets* the header (never appends to a client's): one address is expected."""
    if not forwarded or "," in forwarded:
        return False
    try:
        return ipaddress.ip_address(forwarded.strip()).is_loopback
    except ValueError:
        return False
