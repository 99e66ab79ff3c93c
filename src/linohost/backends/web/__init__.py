"""Web servers: the Apache that `linohost serve` runs, and the system's Apache.

`serve` runs Debian's Apache binary when it and the modules the process
backend needs are installed, else one built from PyPI (host key `apache.server`
chooses: auto, debian, embedded).
"""

from ...errors import UsageError
from .base import BASE_MODULES
from .debian import DebianApache
from .embedded import EmbeddedApache


def serve_modules(backend):
    """Debian names of the modules `serve` loads for the process *backend*."""
    return (*BASE_MODULES, *backend.apache_modules)


def serve_apache(host, modules, choice="auto", debian=None):
    """The Apache that `serve` runs for *modules*: Debian's when *choice* is "debian",
    or "auto" and it has them all; else the embedded one.

    *debian* is the Debian installation to look at (default: the system's)."""
    debian = debian or DebianApache(host)
    missing = debian.missing(modules)
    if choice == "debian" and missing:
        raise UsageError(f"apache.server is 'debian' but Debian's Apache lacks packages: "
                         f"apt-get install {' '.join(missing)}")
    if choice == "embedded" or missing:
        return EmbeddedApache(host)
    return debian
