"""One Unix user per site (when linohost runs as root).

Site SITE runs as the system user ``<site_user_prefix>SITE`` (no login shell,
its own group, HOME ``home/SITE``), made by `new`/`restore`/`clone` and removed
by `rm`, journaled like every other resource. It owns what is its own, and no
other site can even enter it:

    SITE/, SITE/apache/   SITE's user, group site_group (the web server's), 0710:
                     the web server may pass through (Apache checks that
                     apache/wsgi.py exists), read nothing
    SITE/media/      group site_group, 2750 (setgid: what the site adds there gets
                     the group too): the one part of a site the web server reads
    SITE/... others  SITE's user and group, nothing for others
    secrets/db-SITE, secrets/key-SITE    SITE's user, 0600
    home/SITE/       SITE's user, 0700
    secrets/, home/  root, 0711 (no listing); master.key, shared.key root, 0600

Site processes run with umask 027, so what they make is their own, or, in
media/, the web server's to read.
"""

import contextlib
import fcntl
import os
import re
import stat
import time
from pathlib import Path

from ..errors import Conflict, StepFailed, UsageError
from ..model import siteids
from . import keys, pagecache
from .journal import undo_step

NOLOGIN = "/usr/sbin/nologin"
#: userdel's exit code when the user still runs processes
USER_BUSY = 8


def check_free(ctx, site_name):
    """Before anything is made: the name is valid, no such user or group exists, and
    the host's id range has an id left."""
    if not ctx.system.is_root:
        return
    import grp
    import pwd
    first, last = id_range(ctx)
    if next(free_ids(first, last), None) is None:
        raise UsageError(f"no id is left in site_ids {first}-{last} (each id is a site's "
                         f"or someone else's): widen the range in {ctx.host.config_path}")
    user = ctx.system.user_of(site_name)
    for lookup, what in ((pwd.getpwnam, "user"), (grp.getgrnam, "group")):
        try:
            lookup(user)
        except KeyError:
            continue
        raise Conflict(f"a Unix {what} named {user!r} already exists (a site of another host "
                       f"root?): choose another site name, or give this host root its own "
                       f"site_user_prefix")


def create(ctx, site_name, journal):
    """Make site *site_name*'s user and its HOME, each recorded in *journal* first."""
    system = ctx.system
    if not system.is_root:
        return
    user, home = system.user_of(site_name), system.home_of(site_name)
    journal.record("unix_user", name=user)
    add_user(ctx, site_name)
    journal.record("tree", path=str(home))
    make_home(ctx, site_name)


#: Held while an id is chosen and given, by every host root of the machine: groupadd
#: checks that an id is free before it locks /etc/group, so two at once could both get
#: one (measured: two host roots' `new` at the same moment made two groups of one gid).
IDS_LOCK = Path("/run/lock/linohost-site-ids.lock")


@contextlib.contextmanager
def ids_locked():
    """The machine's lock on choosing and giving site ids."""
    IDS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(IDS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_user(ctx, site_name):
    """``groupadd`` and ``useradd`` of the site's user with the lowest id of the host's
    range free as both (under :func:`ids_locked`; a tool that is not linohost may take
    one meanwhile: then the next, and an id that ends up shared is given back)."""
    system = ctx.system
    user = system.user_of(site_name)
    first, last = id_range(ctx)
    with ids_locked():
        for n in free_ids(first, last):
            try:
                system.run(["groupadd", "--gid", n, user], what=f"groupadd {user}")
            except StepFailed:
                if _taken(n):
                    continue
                raise
            if _group_names(n) != [user]:             # another group took it too
                system.run(["groupdel", user], what=f"groupdel {user}")
                continue
            try:
                system.run(["useradd", "--system", "--uid", n, "--gid", n, "--no-create-home",
                            "--home-dir", system.home_of(site_name), "--shell", NOLOGIN,
                            "--comment", f"Lino site {site_name}", user],
                           what=f"useradd {user}")
            except StepFailed:
                system.run(["groupdel", user], what=f"groupdel {user}")
                if _taken(n):
                    continue
                raise
            return n
    raise StepFailed(f"no id is left in site_ids {first}-{last} for {user}")


def _group_names(gid):
    """The names of every group with *gid* (one, unless an id was given twice)."""
    import grp
    return [g.gr_name for g in grp.getgrall() if g.gr_gid == gid]


def id_range(ctx):
    """(first, last) of ``site_ids``, checked against the reserved ranges and the
    machine's (UsageError: one line, before anything is made)."""
    return siteids.check(ctx.cfg["site_ids"], machine_ranges())


def free_ids(first, last):
    """The ids of [first, last] that are neither a user's nor a group's, lowest first."""
    import grp
    import pwd
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    return (n for n in range(first, last + 1) if n not in used)


def ids_left(ctx):
    """How many ids of the host's range are free (None when not root)."""
    if not ctx.system.is_root:
        return None
    first, last = siteids.parse(ctx.cfg["site_ids"])
    return sum(1 for _ in free_ids(first, last))


def _taken(n):
    import grp
    import pwd
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(n)
            return True
        except KeyError:
            pass
    return False


def machine_ranges(login_defs="/etc/login.defs", subid_files=("/etc/subuid", "/etc/subgid")):
    """The id ranges this machine uses or hands out: people's (UID_MIN-UID_MAX), its
    system users' (SYS_UID_MIN-SYS_UID_MAX), subordinate ids (SUB_UID_MIN-SUB_UID_MAX
    and every range in /etc/subuid, /etc/subgid); as ``(lo, hi, whose)``."""
    defs = {}
    try:
        for line in Path(login_defs).read_text().splitlines():
            m = re.match(r"\s*([A-Z_]+)\s+(\d+)\s*$", line)
            if m:
                defs[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    out = []
    for kind in ("UID", "GID"):
        for prefix, whose in (("", "people's accounts"), ("SYS_", "system users"),
                              ("SUB_", "subordinate ids for user namespaces")):
            lo, hi = defs.get(f"{prefix}{kind}_MIN"), defs.get(f"{prefix}{kind}_MAX")
            if lo is not None and hi is not None:
                out.append((lo, hi, f"{whose}, {prefix}{kind}_MIN-{prefix}{kind}_MAX in "
                                    f"{login_defs}"))
    for f in subid_files:
        try:
            lines = Path(f).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                lo = int(parts[1])
                out.append((lo, lo + int(parts[2]) - 1, f"subordinate ids of {parts[0]} in {f}"))
    return tuple(out)


def make_home(ctx, site_name):
    home = ctx.system.home_of(site_name)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, *ctx.system.owner_of(site_name))
    os.chmod(home, 0o700)


@undo_step("unix_user")
def _undo_unix_user(ctx, name):
    """Remove the user *name* and its group. A process of it that is still stopping
    (the web server's graceful reload ends its daemon) gets a few seconds."""
    import grp
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        pass
    else:
        _userdel(ctx, name)
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    ctx.system.run(["groupdel", name], what=f"groupdel {name}")


def _userdel(ctx, name):
    deadline = time.monotonic() + 15
    while True:
        try:
            ctx.system.run(["userdel", name], what=f"userdel {name}")
            return
        except StepFailed:
            if time.monotonic() > deadline or not _busy(name):
                break
            time.sleep(0.5)
    ctx.system.run(["userdel", "--force", name], what=f"userdel {name}")


def runs(ctx, site_name):
    """Whether a process of site *site_name*'s user runs (a worker, a daemon)."""
    return _busy(ctx.system.user_of(site_name))


def _busy(name):
    import pwd
    uid = pwd.getpwnam(name).pw_uid
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid:
                return True
        except FileNotFoundError:
            pass
    return False


def destruction_steps(ctx, site_name):
    """What `rm` destroys of the site's user, after its files: HOME, then the user."""
    if not ctx.system.is_root:
        return []
    return [{"kind": "tree", "path": str(ctx.system.home_of(site_name))},
            {"kind": "unix_user", "name": ctx.system.user_of(site_name)}]


def check_all(ctx):
    """Every site has its user (as root): else say how to migrate the host."""
    for name in ctx.host.site_names():
        ctx.system.owner_of(name)


def run_as(ctx):
    """For the process backend: site name -> (user, group) its processes run as (its
    own group has the user's name); None when not root (they run as the caller)."""
    if not ctx.system.is_root:
        return None
    return lambda site_name: (ctx.system.user_of(site_name),) * 2


# -- ownership -------------------------------------------------------------------

def own_project(ctx, site_name):
    """Give site *site_name*'s project directory to its user (see the module doc)."""
    owner = ctx.system.owner_of(site_name)
    if not owner:
        return
    uid, gid = owner
    web = ctx.system.web_owner[1]
    project = ctx.host.site_dir(site_name)
    own_tree(project, uid, gid, files=(0o007, 0), dirs=(0o007, 0))
    own_tree(project / "media", uid, web, files=(0o007, 0o040), dirs=(0o007, 0o2750))
    for d in _passages(project):
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            os.fchown(fd, uid, web)
            os.fchmod(fd, 0o710)
        finally:
            os.close(fd)


def _passages(project):
    """The directories of a project the web server passes through (group site_group, 0710)."""
    return (project, project / "apache")


def project_needs_owning(ctx, site_name):
    """Whether anything of the project directory differs from :func:`own_project`."""
    owner = ctx.system.owner_of(site_name)
    project = ctx.host.site_dir(site_name)
    passages = [str(d) for d in _passages(project)]
    for d in passages:
        st = os.lstat(d)
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (
                owner[0], ctx.system.web_owner[1], 0o710):
            return True
    media = str(project / "media")
    for dirpath, dirnames, filenames in os.walk(project):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if p in passages:
                continue
            st = os.lstat(p)
            if pagecache.is_shared(st):
                if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (0, 0, pagecache.MODE):
                    return True
                continue
            in_media = p.startswith(media + os.sep) or p == media
            gid = ctx.system.web_owner[1] if in_media else owner[1]
            if st.st_uid != owner[0] or st.st_gid != gid or (
                    not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o007):
                return True
    return False


def own_tree(top, uid, gid, files=(0, 0), dirs=(0, 0)):
    """chown everything under *top* (itself included) to *uid*:*gid* and change modes:
    ``mode & ~clear | set`` with ``(clear, set)`` for *files* and *dirs*.

    Safe in a tree its future owner may change meanwhile: it walks by directory
    file descriptors and never follows a symbolic link (links are chowned, not
    followed), so nothing outside *top* is ever touched."""
    top = Path(top)
    if not top.exists() or top.is_symlink():
        return
    for _, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        _own_fd(dirfd, uid, gid, dirs)
        for n in dirnames + filenames:
            try:
                fd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY,
                             dir_fd=dirfd)
            except OSError:          # a symbolic link, a socket: chown it, nothing more
                try:
                    os.chown(n, uid, gid, dir_fd=dirfd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                continue
            try:
                st = os.fstat(fd)
                if pagecache.is_shared(st):     # the host's, shared by sites: root's
                    _own_fd(fd, 0, 0, (0o7777, pagecache.MODE))
                elif not stat.S_ISDIR(st.st_mode):              # directories: by fwalk
                    _own_fd(fd, uid, gid, files)
            finally:
                os.close(fd)


def _own_fd(fd, uid, gid, change):
    clear, add = change
    os.fchown(fd, uid, gid)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if (mode & ~clear) | add != mode:
        os.fchmod(fd, (mode & ~clear) | add)


def own_secret(ctx, site_name, path):
    """A secret of the site: its user's, 0600 (root's when not root)."""
    owner = ctx.system.owner_of(site_name)
    os.chmod(path, 0o600)
    if owner:
        os.chown(path, *owner)


# -- the host's shared directories ---------------------------------------------

def host_dirs(ctx):
    """{directory: (uid, gid, mode)} of the host's shared directories as root."""
    host = ctx.host
    return {host.secrets_dir: (0, 0, 0o711), host.home_dir: (0, 0, 0o711),
            host.logs_dir: (0, 0, 0o750)}


# -- migrating a host made before sites had their own users (`linohost init`) -----

def migration(ctx):
    """What `init` changes so that every site has its own user and files: a list of
    ``(description, function())``; empty when nothing is left to change."""
    system, host = ctx.system, ctx.host
    plan = []
    if system.is_root:
        for d, (uid, gid, mode) in host_dirs(ctx).items():
            st = d.stat()
            if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
                plan.append((f"{d}: root's, mode {mode:o}",
                             lambda d=d, uid=uid, gid=gid, mode=mode: _own_dir(d, uid, gid, mode)))
        for f in keys.host_key_files(host):
            st = f.stat()
            if (st.st_uid, stat.S_IMODE(st.st_mode)) != (0, 0o600):
                plan.append((f"{f}: readable by root only",
                             lambda f=f: (os.chown(f, 0, 0), os.chmod(f, 0o600))))
        for env in host.envs():
            static = Path(env.static_root)
            if static.is_dir() and static.stat().st_uid != 0:
                plan.append((f"{static}: root's, readable by all (sites and the web server)",
                             lambda s=static: own_tree(s, 0, 0, files=(0o022, 0o444),
                                                       dirs=(0o022, 0o555))))
    for site in host.sites():
        plan += _site_migration(ctx, site.name)
    return plan


def _own_dir(d, uid, gid, mode):
    os.chown(d, uid, gid)
    os.chmod(d, mode)


def _site_migration(ctx, name):
    import pwd
    system, host = ctx.system, ctx.host
    plan = []
    if system.is_root:
        user = system.user_of(name)
        try:
            pwd.getpwnam(user)
            made = True
        except KeyError:
            made = False
            plan.append((f"create Unix user {user} (no login shell, an id of site_ids) for "
                         f"site {name}", lambda: add_user(ctx, name)))
        home = system.home_of(name)
        if not made or not home.is_dir() or home.stat().st_uid != pwd.getpwnam(user).pw_uid:
            plan.append((f"{home}: HOME of {user}, only its own",
                         lambda: make_home(ctx, name)))
        if not made or project_needs_owning(ctx, name):
            plan.append((f"{host.site_dir(name)}: chown to {user} (database, settings, "
                         f"config); only media/ readable by group {ctx.cfg['site_group']}",
                         lambda: own_project(ctx, name)))
        db_secret = host.secrets_dir / f"db-{name}"
        if db_secret.exists() and (not made or db_secret.stat().st_uid !=
                                   pwd.getpwnam(user).pw_uid):
            plan.append((f"{db_secret}: readable by {user} only",
                         lambda: own_secret(ctx, name, db_secret)))
    if keys.needs_writing(ctx, name):
        plan.append((f"{keys.key_file(host, name)}: the SECRET_KEY of {name} "
                     f"({ctx.cfg['secret_policy']} policy), readable by its user only"
                     if keys.site_key(host, ctx.cfg["secret_policy"], name) else
                     f"{keys.key_file(host, name)}: removed (policy env)",
                     lambda: keys.write(ctx, name)))
    return plan


# -- moving a site's user into the host's id range (`linohost move-ids`) ----------

def outside_range(ctx, site_name):
    """Whether site *site_name*'s user has an id outside ``site_ids`` (made by an
    earlier linohost, from Debian's system range)."""
    first, last = id_range(ctx)
    uid, gid = ctx.system.owner_of(site_name)
    return not (first <= uid <= last and uid == gid)


def move_into_range(ctx, site_name, journal, wait=30):
    """Give site *site_name*'s user and group the lowest free id of the range and its
    files (project, HOME, secrets) to them; nothing else is touched. The site must be
    asleep: its processes get *wait* seconds to leave (usermod refuses otherwise)."""
    import grp
    import pwd
    system, host = ctx.system, ctx.host
    user = system.user_of(site_name)
    old_uid, old_gid = system.owner_of(site_name)
    first, last = id_range(ctx)

    def lowest_free():
        new = next((n for n in free_ids(first, last)), None)
        if new is None:
            raise UsageError(f"no id is left in site_ids {first}-{last}: widen the range in "
                             f"{host.config_path}")
        return new
    lowest_free()                               # refused before anything waits
    deadline = time.monotonic() + wait
    while _busy(user) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _busy(user):
        raise StepFailed(f"site {site_name} is awake (a process of {user} runs): let it "
                         f"sleep, then move it")
    with ids_locked():
        new = lowest_free()
        journal.record("site_ids", site=site_name, user=user, uid=old_uid, gid=old_gid,
                       new=new)
        _renumber(ctx, site_name, user, (old_uid, old_gid), (new, new))
    assert pwd.getpwnam(user).pw_uid == new and grp.getgrnam(user).gr_gid == new
    return old_uid, new


def _renumber(ctx, site_name, user, old, new):
    system = ctx.system
    system.run(["groupmod", "--gid", new[1], user], what=f"groupmod {user}")
    system.run(["usermod", "--uid", new[0], "--gid", new[1], user], what=f"usermod {user}")
    for top in _site_paths(ctx, site_name):
        rechown(top, old, new)


def _site_paths(ctx, site_name):
    host = ctx.host
    return (host.site_dir(site_name), ctx.system.home_of(site_name),
            host.secrets_dir / f"key-{site_name}", host.secrets_dir / f"db-{site_name}")


def rechown(top, old, new):
    """Under *top* (itself included), give what belongs to uid/gid *old* to *new*
    ``(uid, gid)``; other owners (the web server's group on media/) stay. Links are
    changed, never followed."""
    top = Path(top)
    if not top.exists() and not top.is_symlink():
        return

    def change(path, dir_fd=None):
        st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        uid = new[0] if st.st_uid == old[0] else -1
        gid = new[1] if st.st_gid == old[1] else -1
        if uid != -1 or gid != -1:
            mode = stat.S_IMODE(st.st_mode)
            os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode) and mode & 0o6000:     # chown clears setgid
                os.chmod(path, mode, dir_fd=dir_fd)

    if top.is_symlink() or not top.is_dir():
        change(top)
        return
    change(top)
    for _, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        for n in dirnames + filenames:
            change(n, dir_fd=dirfd)


@undo_step("site_ids")
def _undo_site_ids(ctx, site, user, uid, gid, new):
    """Give the site's user and group back their old ids (each that was changed: a
    kill may come between groupmod and usermod), and its files."""
    import grp
    import pwd
    try:
        now_uid, now_gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid
    except KeyError:
        return
    if now_uid == new:
        ctx.system.run(["usermod", "--uid", uid, user], what=f"usermod {user}")
    if now_gid == new:              # groupmod keeps it the user's primary group
        ctx.system.run(["groupmod", "--gid", gid, user], what=f"groupmod {user}")
    for top in _site_paths(ctx, site):
        rechown(top, (new, new), (uid, gid))
