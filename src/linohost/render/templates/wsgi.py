"""WSGI entry point of a linohost site, the same for every site.

It finds its site from its own location (SITE/apache/wsgi.py) and *assigns*
DJANGO_SETTINGS_MODULE: a process serves exactly one site.
"""
import os
import sys
from pathlib import Path

here = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(here.parent), str(here.parent / "local")]
os.environ["DJANGO_SETTINGS_MODULE"] = here.name + ".settings"
# Caches (fontconfig...) in the host's home/, not in the site user's own HOME.
os.environ.setdefault("XDG_CACHE_HOME", str(here.parent / "home" / ".cache"))

from django.core.wsgi import get_wsgi_application  # noqa: E402

_django = get_wsgi_application()


def application(environ, start_response):
    # Lino routes its site_prefix itself: behind `WSGIScriptAlias /SITE`
    # Django must see the full path, so SCRIPT_NAME goes back into PATH_INFO.
    script_name = environ.get("SCRIPT_NAME", "")
    if script_name:
        environ["PATH_INFO"] = script_name + environ.get("PATH_INFO", "")
        environ["SCRIPT_NAME"] = ""
    return _django(environ, start_response)
