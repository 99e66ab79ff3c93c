"""WSGI entry point of a linohost site, the same for every site.

It finds its site from its own location (SITE/apache/wsgi.py) and *assigns*
DJANGO_SETTINGS_MODULE: a process serves exactly one site. While the file
SITE/maintenance.html exists (an upgrade or restore is moving the site), every
request gets it with status 503.
"""
import os
import sys
import threading
from pathlib import Path

here = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(here.parent), str(here.parent / "local")]
os.environ["DJANGO_SETTINGS_MODULE"] = here.name + ".settings"
# Caches (fontconfig...) in the host's home/, not in the site user's own HOME.
os.environ.setdefault("XDG_CACHE_HOME", str(here.parent / "home" / ".cache"))

MAINTENANCE = here / "maintenance.html"
_django = None
_lock = threading.Lock()


def _load():
    global _django
    with _lock:
        if _django is None:
            from django.core.wsgi import get_wsgi_application
            _django = get_wsgi_application()
    return _django


def application(environ, start_response):
    try:
        page = MAINTENANCE.read_bytes()
    except FileNotFoundError:
        page = None
    if page is not None:
        start_response("503 Service Unavailable", [
            ("Content-Type", "text/html; charset=utf-8"), ("Retry-After", "60"),
            ("Cache-Control", "no-store")])
        return [page]
    # Lino routes its site_prefix itself: behind `WSGIScriptAlias /SITE`
    # Django must see the full path, so SCRIPT_NAME goes back into PATH_INFO.
    script_name = environ.get("SCRIPT_NAME", "")
    if script_name:
        environ["PATH_INFO"] = script_name + environ.get("PATH_INFO", "")
        environ["SCRIPT_NAME"] = ""
    return (_django or _load())(environ, start_response)


if not MAINTENANCE.exists():
    _load()          # set Django up as soon as mod_wsgi loads this script
