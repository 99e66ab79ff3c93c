"""Process backends: how a site's requests reach the Python process serving it.

A backend renders the Apache directives of the server and of each site
(:class:`~linohost.render.apache.Mount`) and knows how to restart one site.
Rendering and serving call only these methods, so another backend (a keeper
that starts site workers on demand and stops idle ones) can replace mod_wsgi
daemons without touching them.
"""

from .modwsgi import ModWsgi

BACKENDS = {"mod_wsgi": ModWsgi}


def process_backend(cfg, *, user=None, group=None):
    """The backend named by the host config; *user*/*group* run the site processes."""
    return BACKENDS[cfg["process_backend"]](cfg, user=user, group=group)
