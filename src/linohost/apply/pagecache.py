"""One page cache per app: the files Lino generates for its front ends
(``media/cache``: React's JSON layouts, ExtJS's ``lino_*.js``, ``local.css``) are
stored once on the host and shared by every site that has the same.

Every site of an environment builds its cache with one ``lino_version``, the
environment's (siteinit.py's ``cache`` task), so sites whose structure is the same
(app, settings, languages, the rows Lino makes actions of) write the same bytes.
After a site's cache is built, :func:`share` puts each file into the host's store,
``ROOT/pagecache/XX/SHA256`` (linohost's, read-only for all), and makes the site's name of
it a hard link to the stored one: a thousand demo sites of one app hold one copy of
its layouts, and a site whose own settings change its layouts simply has files of
its own content. The web server and the site read them as before; no site can write
them. When Lino rebuilds a cache file in a running site (a changed excerpt type, an
admin's "rebuild site cache"), the shared hook's ``_cache_files_of_its_own`` gives
the site a file of its own in the link's place (djangosite_local.py.j2).

The store keeps what some site links: :func:`prune` drops the files no site has any
more (after ``rm`` and every :func:`share`); ``init`` gives a stored file that
someone re-owned (``chown -R`` of a site) back to root (users.own_tree). Root works in the site's directory by
directory file descriptors and never follows a link (as users.own_tree does).
"""
import hashlib
import os
import stat

#: The store under the host root.
STORE = "pagecache"
#: The mode of a stored file (its owner: root).
MODE = 0o444
#: Where a link is made before it replaces the site's file (in the same directory).
TMP_PREFIX = ".linohost-link-"


def store_dir(host):
    return host.root / STORE


def is_shared(st):
    """Whether *st* (an lstat result) is a file of the store: linked and read-only
    (Lino writes its cache files writable by their owner)."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not st.st_mode & 0o222


def share(host, project):
    """Put the files of *project*'s media/cache into the store and link them from
    there; return (files shared, bytes they take in the site no more)."""
    cache = project / "media" / "cache"
    if not cache.is_dir() or cache.is_symlink():    # an app without front-end files
        return 0, 0
    store = store_dir(host)
    _mkdir(store)
    files = saved = 0
    for _, _, filenames, dirfd in os.fwalk(cache, follow_symlinks=False):
        for name in filenames:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or is_shared(st) or name.startswith(TMP_PREFIX):
                continue
            data = _read(name, dirfd)
            if data is None:
                continue
            target = _stored(store, data)
            tmp = TMP_PREFIX + name
            try:
                os.unlink(tmp, dir_fd=dirfd)
            except FileNotFoundError:
                pass
            os.link(target, tmp, dst_dir_fd=dirfd)
            os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            files += 1
            saved += st.st_size
    prune(host)
    return files, saved


def prune(host):
    """Remove the stored files no site links any more; return how many."""
    store = store_dir(host)
    removed = 0
    if not store.is_dir():
        return 0
    for sub in store.iterdir():
        if not sub.is_dir():
            continue
        for f in sub.iterdir():
            st = f.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                f.unlink()
                removed += 1
    return removed


def _read(name, dirfd):
    """The bytes of regular file *name* in *dirfd*, or None if it is something else
    by now (the site's user may change its directory meanwhile)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def _stored(store, data):
    """The store's file of *data* (written now if it has none: root's, 0444)."""
    digest = hashlib.sha256(data).hexdigest()
    sub = store / digest[:2]
    target = sub / digest
    if target.exists():
        return target
    _mkdir(sub)
    tmp = sub / f".{digest}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, MODE)                         # whatever the umask
    os.replace(tmp, target)
    return target


def _mkdir(path):
    path.mkdir(mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)
