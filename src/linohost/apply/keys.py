"""Each site's SECRET_KEY in a file only the site can read: ``secrets/key-SITE``.

linohost writes it (as root: root derives it) so that the host's own key file
stays root's alone:

- ``derived``: HMAC-SHA256 of the site's name under ``master.key``: the site
  knows its own key, not the master key nor any other site's;
- ``shared``: a copy of ``shared.key``. One key for all sites means each site
  knows every other's key (it can forge their sessions): use it only for
  sites that trust each other;
- ``env``: no file; DJANGO_SECRET_KEY from the environment.

An adopted site keeps the key it had (``secrets/kept-key-SITE``, root's): under
``derived`` and ``shared`` it is the site's key, so its users stay signed in.
"""

import hashlib
import hmac
import stat

from ..errors import UsageError
from ..fs import write_secret

HOST_KEYS = {"derived": "master.key", "shared": "shared.key"}
#: The host's SMTP password (root's); each site reads its own copy.
SMTP_PASSWORD = "smtp.password"


def key_file(host, site_name):
    return host.secrets_dir / f"key-{site_name}"


def kept_file(host, site_name):
    """The key an adopted site brought along (root's copy), if it kept one."""
    return host.secrets_dir / f"kept-key-{site_name}"


def host_key_files(host):
    """The host's own key files present (root's only)."""
    return [host.secrets_dir / n for n in HOST_KEYS.values()
            if (host.secrets_dir / n).exists()]


def site_key(host, policy, site_name):
    """The SECRET_KEY of *site_name* under *policy*, or None (policy env)."""
    if policy not in HOST_KEYS:
        return None
    kept = kept_file(host, site_name)
    if kept.exists():
        return kept.read_text(encoding="utf-8").strip()
    host_key = (host.secrets_dir / HOST_KEYS[policy]).read_text(encoding="utf-8").strip()
    if policy == "shared":
        return host_key
    return hmac.new(host_key.encode(), b"site:" + site_name.encode(), hashlib.sha256).hexdigest()


def smtp_file(host, site_name):
    """The site's copy of the host's SMTP password (every site sends through it)."""
    return host.secrets_dir / f"smtp-{site_name}"


def own_secrets(host, policy, site_name):
    """{path: text, or None for no file} of the secret files only *site_name* reads."""
    smtp = host.secrets_dir / SMTP_PASSWORD
    return {key_file(host, site_name): site_key(host, policy, site_name),
            smtp_file(host, site_name): (smtp.read_text(encoding="utf-8").strip()
                                         if smtp.exists() else None)}


def write(ctx, site_name, journal=None):
    """Write (or remove, when there is nothing to keep in them) *site_name*'s own
    secret files: its key, its copy of the SMTP password; owned by its user."""
    for path, text in own_secrets(ctx.host, ctx.cfg["secret_policy"], site_name).items():
        if text is None:
            path.unlink(missing_ok=True)
            continue
        if journal:
            journal.record("file", path=str(path))
        write_secret(path, text, ctx.system.owner_of(site_name))


def needs_writing(ctx, site_name):
    """Whether a secret file of *site_name* is missing, stale, or not only its user's."""
    for path, text in own_secrets(ctx.host, ctx.cfg["secret_policy"], site_name).items():
        if text is None or not path.exists():
            if path.exists() or text is not None:
                return True
            continue
        st = path.stat()
        if path.read_text(encoding="utf-8").strip() != text or stat.S_IMODE(st.st_mode) != 0o600:
            return True
        try:
            owner = ctx.system.owner_of(site_name)
        except UsageError:                  # its user is still to be made
            return True
        if owner and st.st_uid != owner[0]:
            return True
    return False
