"""The files of a site's project directory and the shared djangosite_local.py."""

import hashlib
import re
from pathlib import Path

from . import render

#: The line in djangosite_local.py below which the operator's text is kept.
OPERATOR_MARKER = "# ==== linohost keeps everything below this line: server-wide settings of your own ===="

FRONT_ENDS = {"react": "lino_react.react", "extjs": "lino_extjs.extjs"}
#: The Lino plugin in the host's local/ directory that keeps a front end's
#: requests under the site's URL prefix; installed by sites under a prefix.
PREFIX_PLUGIN = "under_prefix"

#: The Redis of Lino's channel layer (Lino's own choice: localhost, the default port).
REDIS_URL = "redis://localhost:6379/0"

ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
}


def manage_py():
    """manage.py: the same bytes for every site."""
    return render("manage.py")


def wsgi_py():
    """apache/wsgi.py: the same bytes for every site."""
    return render("wsgi.py")


#: The line of a site's settings.py below which the site's own settings are kept;
#: it holds a digest of the generated part above it, so that an edit there is found.
SITE_MARKER = ("# ==== linohost keeps everything below this line: settings of this "
               "site's own (above: {digest}) ====")
_SITE_MARKER = re.compile("^" + re.escape(SITE_MARKER).replace(
    re.escape("{digest}"), "(?P<digest>[0-9a-f]{16})") + "\n", re.M)


def digest(generated):
    """The digest of a generated part, as its marker line holds it."""
    return hashlib.sha256(generated.encode()).hexdigest()[:16]


def settings_py(site, *, own="", **context):
    """The settings.py of *site*: the generated part, the marker, the site's *own* part
    (kept byte for byte). *context*: see :func:`generated_settings`."""
    generated = generated_settings(site, **context)
    return generated + SITE_MARKER.format(digest=digest(generated)) + "\n" + own


def split_settings(text):
    """(generated part, digest its marker holds, own part) of a settings.py; None
    when it has no marker (written by an older linohost, or by hand)."""
    m = _SITE_MARKER.search(text)
    if not m:
        return None
    return text[:m.start()], m["digest"], text[m.end():]


def generated_settings(site, *, site_prefix, static_root, allowed_hosts, db_server=None):
    """The generated part of *site*'s settings.py.

    *db_server* is ``{"host": ..., "port": ...}`` for server databases.
    """
    return render(
        "settings.py.j2",
        site=site,
        site_prefix=site_prefix,
        default_ui=FRONT_ENDS[site.front_end],
        prefix_plugin=PREFIX_PLUGIN,
        languages=" ".join(site.languages),
        static_root=static_root,
        allowed_hosts=list(allowed_hosts),
        engine=ENGINES[site.db],
        db_server=db_server,
    )


def project_files(site, own="", **settings_context):
    """Every file of a project directory linohost writes: ``{relative path: text}``
    (*own*: the site's own part of its settings)."""
    return {
        "__init__.py": "",
        "settings.py": settings_py(site, own=own, **settings_context),
        "manage.py": manage_py(),
        "apache/wsgi.py": wsgi_py(),
    }


def prefix_plugin():
    """local/under_prefix/__init__.py: the same bytes on every host."""
    return render("under_prefix.py")


def djangosite_local(cfg, secrets_dir, operator_part=None):
    """The shared djangosite_local.py; *operator_part* is kept from the old file."""
    if operator_part is None:
        operator_part = render("djangosite_local_operator.py")
    return render(
        "djangosite_local.py.j2",
        cfg=cfg,
        secrets_dir=str(secrets_dir),
        marker=OPERATOR_MARKER,
        tls=cfg["tls.mode"] != "off",
        https_ports=sorted({cfg["tls.https_port"], cfg["apache.port"]}),
        behind_proxy=cfg["process_backend"] != "mod_wsgi",
        redis_url=REDIS_URL,
        channel_prefix=channel_prefix(Path(secrets_dir).parent),
    ) + operator_part


def channel_prefix(root):
    """The names of a host root's channels in Redis begin with this."""
    return "linohost-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]


def operator_part_of(text):
    """The operator's part of an existing djangosite_local.py (None if no marker)."""
    head, sep, tail = text.partition(OPERATOR_MARKER + "\n")
    return tail if sep else None
