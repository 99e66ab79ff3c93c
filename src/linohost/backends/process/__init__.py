"""Process backends: how a site's requests reach the Python process serving it.

A backend renders the Apache directives of the server and of each site
(:class:`~linohost.render.apache.Mount`), restarts one site and reports the
state of each (``status``). Rendering, serving and the commands call only
these, so the two backends are interchangeable:

- ``mod_wsgi``: one mod_wsgi daemon process per site inside Apache;
- ``keeper``: one linohost keeper process holds a unix socket per site and
  starts its worker on demand (scale to zero); Apache proxies to the socket.
"""

from .keeper import Keeper
from .modwsgi import ModWsgi

BACKENDS = {"mod_wsgi": ModWsgi, "keeper": Keeper}


def process_backend(host, *, user=None, group=None, run_as=None):
    """The backend named by *host*'s config. mod_wsgi daemons run as ``run_as(site
    name)`` -> (user, group) if given (one user per site), else as *user*/*group*;
    keeper workers as the site's user (:meth:`System.owner_of`)."""
    return BACKENDS[host.cfg["process_backend"]](host.cfg, user=user, group=group,
                                                 run_as=run_as, host=host)
