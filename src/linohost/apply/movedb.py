"""`adopt --db move`: the adopted site keeps the source's PostgreSQL or MariaDB
database where it is, and takes over its user, which gets a new password (in
linohost's secrets, as every site's) and, on MariaDB, the host part of linohost's
site users. Nothing is copied; the source's old services are stopped first, so
nothing else writes to it.

Undone (a failed check, a kill) by :func:`_undo_moved_database`: the user gets its
old password and host part back, and the database the contents it had when the
archive of the source was made (the adoption's first write), so the source runs
again as it did.
"""

import secrets

from ..backends.db import backend
from ..errors import Conflict, UsageError
from ..fs import write_secret
from .journal import undo_step

#: How the local server may be named in a project's settings.
LOCAL = {"127.0.0.1", "localhost", "::1"}


def check(ctx, database):
    """Refuse, before anything is made, a *database* (apply.sourcedb.Database) that
    --db move cannot take over: not on this host's server, a user not its own, or a
    name another site of this host has."""
    cfg, e = ctx.cfg, database.engine
    if e == "sqlite":
        raise UsageError(f"--db move keeps a server database in place; {database.name} is "
                         f"SQLite: use --db copy")
    server = cfg[f"{e}.host"]
    same = database.host == server or {database.host, server} <= LOCAL
    if not same or int(database.port or cfg[f"{e}.port"]) != int(cfg[f"{e}.port"]):
        raise UsageError(f"--db move keeps the database on its server; {database.describe()} "
                         f"is not on this host's {e} server ({server}:{cfg[f'{e}.port']}): "
                         f"use --db copy")
    if database.user != database.name:
        raise UsageError(f"--db move takes over a database with a user of its own name: "
                         f"{database.name}'s user is {database.user!r}: use --db copy")
    used = [s.name for s in ctx.host.sites() if s.db == e and s.db_name == database.name]
    if used:
        raise Conflict(f"the {e} database {database.name} is site {used[0]}'s")
    be = backend(e, cfg)
    others = be.others_of(database.name)
    if others:
        raise UsageError(f"--db move would take user {database.name} from "
                         f"{', '.join(others[:3])} too: use --db copy")
    users = len(be.hosts_of(database.name)) if e == "mysql" else 1
    if users != 1:
        raise UsageError(f"--db move takes over one MariaDB user {database.name}; there are "
                         f"{users}: use --db copy")


def take_over(ctx, journal, site, database, archive):
    """Give *database*'s user (about to be *site*'s) a new password, stored as the
    site's, and on MariaDB linohost's host part; journaled (see the module doc)."""
    host, e = ctx.host, database.engine
    be = backend(e, ctx.cfg)
    old = host.secrets_dir / f"moved-db-{site}"          # the source's, for an undo
    journal.record("file", path=str(old))
    write_secret(old, database.password)
    was = be.hosts_of(database.name)[0] if e == "mysql" else ""
    journal.record("moved_database", site=site, engine=e, name=database.name, host_part=was,
                   archive=str(archive))
    if e == "mysql" and was != be.client_host:
        be.rehost(database.name, was, be.client_host)
    secret = host.secrets_dir / f"db-{site}"
    journal.record("file", path=str(secret))
    password = secrets.token_urlsafe(24)
    write_secret(secret, password)                      # the site's once its user is made
    ctx.progress(f"{site}: the {e} user {database.name} gets a new password")
    be.set_password(database.name, password)


@undo_step("moved_database")
def _undo_moved_database(ctx, site, engine, name, host_part, archive):
    """The taken-over user as it was (password, host part), and the database as the
    archive of the source holds it."""
    from .restore import opened
    host = ctx.host
    be = backend(engine, ctx.cfg)
    if engine == "mysql" and host_part != be.client_host and be.client_host in be.hosts_of(name):
        be.rehost(name, be.client_host, host_part)
    old = host.secrets_dir / f"moved-db-{site}"
    if old.is_file():
        be.set_password(name, old.read_text()[:-1],      # (write_secret's newline)
                        *([host_part] if engine == "mysql" else []))
    with opened(host, archive) as (manifest, data):
        be.load(name, data / manifest.native, over=True)
