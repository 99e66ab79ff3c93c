"""The locale a site asks for (Lino's ``site_locale``: Cosi's is ``de_BE.UTF-8``).

Lino calls ``setlocale()`` with it at every start and warns "de_BE.UTF-8 :
unsupported locale setting" when the machine lacks it. As root, `new`
generates it once, as Debian's locale-gen does (a line in /etc/locale.gen, then
localedef into the locale archive); as another user it says once what to do.
"""

import re
import subprocess
from pathlib import Path

from ..errors import StepFailed
from ..fs import atomic_write

LOCALE_GEN = Path("/etc/locale.gen")
DEFINITIONS = Path("/usr/share/i18n/locales")
ALIASES = Path("/usr/share/locale/locale.alias")


def asked(siteinit_output):
    """The site_locale that siteinit's ``locale`` task printed ("" for none)."""
    m = re.search(r"^site_locale: *(\S*)", siteinit_output, re.M)
    return m.group(1) if m else ""


def _key(name):
    """Spellings of one locale compare equal: de_BE.UTF-8 = de_BE.utf8."""
    return name.lower().replace("-", "")


def available():
    """The locales this machine has (`locale -a`), as comparison keys."""
    p = subprocess.run(["locale", "-a"], capture_output=True, text=True)
    return {_key(n) for n in p.stdout.split()}


def ensure(ctx, name):
    """Make locale *name* available if it is not (as root); say so once."""
    if not name or _key(name) in available():
        return
    lang, _, charset = name.partition(".")
    charset = charset or "UTF-8"
    if not ctx.system.is_root or not (DEFINITIONS / lang.split("@")[0]).exists():
        how = ("as root, `linohost new` generates it" if not ctx.system.is_root else
               "install Debian's `locales` package, then")
        ctx.progress(f"the site asks for locale {name}, which this machine lacks: Lino "
                     f"warns about it at every start; {how} (or add `{name} {charset}` to "
                     f"{LOCALE_GEN} and run locale-gen)")
        return
    ctx.progress(f"generating locale {name} for this machine (the site's site_locale)")
    _add_to_locale_gen(f"{name} {charset}")
    try:
        ctx.system.run(["localedef", "-i", lang, "-c", "-f", charset, "-A", ALIASES, name],
                       what=f"localedef {name}")
    except StepFailed as e:         # exit 1 = warnings only; the check below decides
        if _key(name) not in available():
            ctx.progress(f"could not generate locale {name}: {e}")


def _add_to_locale_gen(line):
    """Enable *line* in /etc/locale.gen, so that a later locale-gen keeps the locale."""
    text = LOCALE_GEN.read_text() if LOCALE_GEN.exists() else ""
    lines = text.splitlines()
    if line in (ln.strip() for ln in lines):
        return
    commented = [i for i, ln in enumerate(lines) if ln.lstrip("# ").strip() == line]
    if commented:
        lines[commented[0]] = line
    else:
        lines.append(line)
    atomic_write(LOCALE_GEN, "\n".join(lines) + "\n")
