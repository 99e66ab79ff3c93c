"""The Python packages of a site's interpreter against an environment's (pure): which
environment can take an adopted site, and the pins a new one is built from."""

import re

#: Never pinned in a new environment: the installer's own (it gets current ones).
INSTALLERS = {"pip", "setuptools", "wheel", "distribute"}


def canonical(name):
    """A distribution's name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_lino(name):
    """Lino's own packages and Django: what a site's data and answers depend on."""
    n = canonical(name)
    return n in ("lino", "django") or n.startswith("lino-")


def lino_of(source):
    """{canonical name: version} of the Lino packages of *source* ({name: [version,
    local]}, as adopt_probe.py reads them)."""
    return {canonical(n): v for n, (v, _) in source.items() if is_lino(n)}


def mismatches(source, env):
    """[(name, source version, env version or None)]: the Lino packages of *source*
    that *env* ({canonical name: version}) has not at the same version."""
    return [(n, v, env.get(n)) for n, v in sorted(lino_of(source).items()) if env.get(n) != v]


def local_lino(source):
    """The Lino packages of *source* that no package index has at their version
    (editable or local checkouts): an environment cannot be built from its pins."""
    return sorted(canonical(n) for n, (_, local) in source.items() if local and is_lino(n))


def pins(source):
    """``name==version`` of every package of *source* that an index can give, but the
    installer's own: what a new environment for it installs."""
    return [f"{canonical(n)}=={v}" for n, (v, local) in sorted(source.items())
            if not local and canonical(n) not in INSTALLERS]


def env_name_for(source, taken):
    """A new environment's name for *source*: ``lino-VERSION`` (or with a number if
    taken), as other sites of that version can share it."""
    version = lino_of(source).get("lino", "unknown")
    base = "lino-" + re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name
