"""Validation of names: sites, environments, languages, domains."""

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
    linohost lino_local djangosite_local
""".split())

_SITE_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_ENV_RE = re.compile(r"[a-z][a-z0-9_-]*\Z")
_LANG_RE = re.compile(r"[a-z]{2,3}(-[a-z]{2,4})?\Z")
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
