"""Lino apps known by short name; any importable settings module works too."""

import re
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class App:
    name: str               # short name, or the settings module itself
    settings_module: str    # what the site's settings.py star-imports
    packages: tuple = ()    # what `env create` installs for it
    channels: bool = False  # it uses Lino's channels (live notifications, websockets)


#: Apps on PyPI by short name.
APPS = {a.name: a for a in (
    App("std", "lino.projects.std.settings", ("lino",)),
    App("cosi", "lino_cosi.lib.cosi.settings", ("lino-cosi",)),
    App("noi", "lino_noi.lib.noi.settings", ("lino-noi",), channels=True),
    App("amici", "lino_amici.lib.amici.settings", ("lino-amici",)),
    App("avanti", "lino_avanti.lib.avanti.settings", ("lino-avanti",)),
    App("tera", "lino_tera.lib.tera.settings", ("lino-tera",)),
    App("voga", "lino_voga.lib.voga.settings", ("lino-voga",)),
    App("care", "lino_care.lib.care.settings", ("lino-care",)),
)}

_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")


def resolve(name):
    """The :class:`App` for a short name or a dotted settings module."""
    if name in APPS:
        return APPS[name]
    if _MODULE_RE.match(name or ""):
        return App(name, name)
    raise UsageError(
        f"unknown app {name!r}: use one of {', '.join(sorted(APPS))} "
        "or a dotted settings module such as lino_noi.lib.noi.settings")
