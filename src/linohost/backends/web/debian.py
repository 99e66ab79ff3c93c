"""Debian's Apache binary (packages apache2, libapache2-mod-wsgi-py3) run by `linohost serve`.

Only the binary and the modules are Debian's: the server root, config, pid
file and logs are the host's own (``ROOT/apache/``), so the system's Apache
and ``/etc/apache2`` are never touched. Debian's mod_wsgi is built for
Debian's ``/usr/bin/python3``, which environments use by default.
"""

import functools
import subprocess
from pathlib import Path

from ...errors import UsageError
from .base import OwnApache

PACKAGES = {"wsgi": "libapache2-mod-wsgi-py3"}      # modules not in the apache2 package


class DebianApache(OwnApache):
    label = "Debian's Apache"

    def __init__(self, host, binary="/usr/sbin/apache2", modules_dir="/usr/lib/apache2/modules"):
        super().__init__(host)
        self.httpd = Path(binary)
        self.modules_dir = Path(modules_dir)
        self.server_root = self.dir
        self.mime_types = Path("/etc/mime.types")

    def missing(self, modules):
        """What of Debian's packages this machine lacks for *modules*, as apt package names."""
        if not self.httpd.exists():
            return ["apache2", *(PACKAGES[m] for m in modules if m in PACKAGES)]
        return sorted({PACKAGES.get(m, "apache2") for m in modules
                       if m not in self.compiled_in
                       and not (self.modules_dir / f"mod_{m}.so").exists()})

    @functools.cached_property
    def compiled_in(self):
        """Modules built into the binary (Debian: log_config, unixd...): `apache2 -l`."""
        p = subprocess.run([str(self.httpd), "-l"], capture_output=True, text=True, check=True)
        return {ln.strip()[4:-2] for ln in p.stdout.splitlines()
                if ln.strip().startswith("mod_") and ln.strip().endswith(".c")}

    def installed(self):
        return self.httpd.exists()

    def install(self, system, progress):
        raise UsageError("Debian's Apache is not installed: "
                         "apt-get install apache2 libapache2-mod-wsgi-py3")

    def module_path(self, name):
        if name in self.compiled_in:
            return None
        so = self.modules_dir / f"mod_{name}.so"
        if not so.exists():
            raise UsageError(f"Apache module {name} is not installed: "
                             f"apt-get install {PACKAGES.get(name, 'apache2')}")
        return so

    def python_version(self):
        # The package installs mod_wsgi.so -> mod_wsgi.so-3.11 (the Python it is built for).
        return (self.modules_dir / "mod_wsgi.so").resolve().name.rpartition("-")[2]
