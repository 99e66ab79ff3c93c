"""The files of a site's project directory and the shared djangosite_local.py."""

from . import render

#: The line in djangosite_local.py below which the operator's text is kept.
OPERATOR_MARKER = "# ==== linohost keeps everything below this line: server-wide settings of your own ===="

FRONT_ENDS = {"react": "lino_react.react", "extjs": "lino_extjs.extjs"}
#: The Lino plugin in the host's local/ directory that keeps a front end's
#: requests under the site's URL prefix; installed by sites under a prefix.
PREFIX_PLUGIN = "under_prefix"

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


def settings_py(site, *, site_prefix, static_root, allowed_hosts, db_server=None):
    """The individual settings.py of *site*.

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


def project_files(site, **settings_context):
    """Every generated file of a project directory: ``{relative path: text}``."""
    return {
        "__init__.py": "",
        "settings.py": settings_py(site, **settings_context),
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
    ) + operator_part


def operator_part_of(text):
    """The operator's part of an existing djangosite_local.py (None if no marker)."""
    head, sep, tail = text.partition(OPERATOR_MARKER + "\n")
    return tail if sep else None
