"""Validation of names: sites, environments, languages, domains."""

import difflib
import keyword
import os
import re
import sys
from importlib.machinery import PathFinder

from ..errors import UsageError

SITE_NAME_MAX = 25

#: Paths a site prefix must never take: the host's own directories, URL roots
#: that web servers and Lino use, and names that would confuse operators.
RESERVED = frozenset("""
    static media api auth admin accounts apache assets backups cache config
    envs home local logs registry run secrets server-status tmp www default
    linohost lino_local djangosite_local under_prefix adopted pagecache acme
""".split())

_SITE_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_ENV_RE = re.compile(r"[a-z][a-z0-9_-]*\Z")
_LANG_RE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?\Z")
_USER_PREFIX_RE = re.compile(r"[a-z_][a-z0-9_-]*\Z")
#: Longest Unix user name useradd accepts on Debian.
UNIX_USER_MAX = 32
_HOST_RE = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")


def site_name(name, extra_modules=()):
    """Return *name* if it can name a site, else raise UsageError.

    A site directory is a Python package on the host root's path and its name
    is a URL prefix, so it must be a lower-case identifier that is no keyword,
    shadows no importable module and takes no reserved path.
    """
    if not name:
        raise UsageError("site name must not be empty")
    if len(name) > SITE_NAME_MAX:
        raise UsageError(f"site name {name!r} is too long (at most {SITE_NAME_MAX} characters)")
    if not _SITE_RE.match(name):
        raise UsageError(
            f"invalid site name {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise UsageError(f"invalid site name {name!r}: it is a Python keyword")
    if name in RESERVED:
        raise UsageError(f"invalid site name {name!r}: it is a reserved path")
    if name in sys.stdlib_module_names or name in extra_modules or _importable(name):
        raise UsageError(f"invalid site name {name!r}: it would shadow the Python module {name!r}")
    return name


def _importable(name):
    """Whether linohost's own Python finds a module *name*, the directory it was
    started from aside (``python -m`` puts it on the path; it says nothing about
    what a site imports)."""
    cwd = os.getcwd()
    path = [p for p in sys.path if p and os.path.abspath(p) != cwd]
    return PathFinder.find_spec(name, path) is not None


def env_name(name):
    """Return *name* if it can name an environment, else raise UsageError."""
    if not name or len(name) > 40 or not _ENV_RE.match(name):
        raise UsageError(
            f"invalid environment name {name!r}: use lower-case letters, digits, '_' and '-'")
    return name


_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")


def username(text):
    """A Lino (Django) user name: letters, digits and ``_.@+-``."""
    if not _USERNAME_RE.match(text):
        raise UsageError(f"invalid user name {text!r} (letters, digits and _.@+- only)")
    return text


def languages(text):
    """Parse ``en,de`` (or ``en de``) into a tuple of language codes."""
    codes = tuple(c for c in re.split(r"[,\s]+", text.strip()) if c)
    if not codes:
        raise UsageError("--languages needs at least one language code")
    for c in codes:
        if not _LANG_RE.match(c):
            raise UsageError(f"invalid language code {c!r} (expected e.g. en, de, fr)")
    if len(set(codes)) != len(codes):
        raise UsageError(f"duplicate language code in {text!r}")
    return codes


def domain(name):
    """Return *name* if it is a valid host name, else raise UsageError."""
    if not _HOST_RE.match(name or ""):
        raise UsageError(f"invalid domain {name!r}")
    return name


def did_you_mean(unknown, known, listing):
    """The next step after an unknown name: the closest of *known*, and the
    command that lists them (*listing*), e.g. " (did you mean 'shop'? `linohost list`
    shows them all)"."""
    if not known:
        return ""
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f" ({hint}`{listing}` shows them all)"


def site_user(prefix, site):
    """The Unix user of site *site*: *prefix* + *site*, or UsageError if that is no valid
    user name (useradd's rules) or longer than 32 characters."""
    if not _USER_PREFIX_RE.match(prefix):
        raise UsageError(f"invalid site_user_prefix {prefix!r}: use lower-case letters, digits, "
                         f"'_' and '-', starting with a letter or '_'")
    name = prefix + site
    if len(name) > UNIX_USER_MAX:
        raise UsageError(
            f"site name {site!r} is too long for its Unix user {name!r} (at most "
            f"{UNIX_USER_MAX - len(prefix)} characters with site_user_prefix {prefix!r})")
    return name
