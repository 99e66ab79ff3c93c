"""A site's maintenance page: while SITE/maintenance.html exists, its wsgi.py
answers every request with it (status 503), whatever runs behind, and the keeper
runs none of its background tasks."""

from contextlib import contextmanager

from ..render import render
from ..fs import atomic_write


def path(host, name):
    return host.maintenance_page(name)


@contextmanager
def maintenance(host, site, doing="upgraded", journal=None):
    """Show the maintenance page of *site* for the duration of the block.

    With a *journal*, a kill leaves a step that the next command's repair undoes."""
    p = path(host, site.name)
    if journal:
        journal.record("file", path=str(p))
    show(host, site, doing)
    try:
        yield p
    finally:
        p.unlink(missing_ok=True)


def show(host, site, doing):
    """Put up the maintenance page of *site* (what it is being: *doing*)."""
    atomic_write(path(host, site.name), render("maintenance.html.j2", title=site.title,
                                               doing=doing))
