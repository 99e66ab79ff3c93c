"""getlino's layout on disk (getlino 26.7 and older): its config files and where
they put the sites (``SITES_BASE/PREFIX/PRJ``, sharing ``PREFIX/settings.py``).
Only reads; what a site's settings say is read by running them (adopt_probe.py)."""

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

#: Where getlino writes its config: as root in a virtualenv, as root, as a user.
SYSTEM_CONFIG = Path("/etc/getlino/getlino.conf")


def config_files(environ=None, home=None):
    """The config files getlino reads, in its order (they need not exist)."""
    environ = os.environ if environ is None else environ
    out = [SYSTEM_CONFIG]
    if environ.get("VIRTUAL_ENV"):
        out.append(Path(environ["VIRTUAL_ENV"]) / ".getlino.conf")
    out.append(Path(home or Path.home()) / ".getlino.conf")
    return out


@dataclass(frozen=True)
class Layout:
    """The getlino sites of one host: ``sites_base/prefix/PRJ``."""
    sites_base: Path
    prefix: str = "lino_local"
    config: Path = None           # the config file that names it, if one was found
    supervisor_dir: Path = Path("/etc/supervisor/conf.d")    # its sites' programs

    @property
    def local_dir(self):
        return self.sites_base / self.prefix

    @property
    def shared_settings(self):
        return self.local_dir / "settings.py"

    def sites(self):
        """The project directories under it (a settings.py and a manage.py), by name."""
        if not self.local_dir.is_dir():
            where = f" (named by {self.config})" if self.config else ""
            raise UsageError(f"{self.local_dir}{where}: no such directory, no getlino sites")
        return sorted(d for d in self.local_dir.iterdir() if d.is_dir() and
                      (d / "settings.py").is_file() and (d / "manage.py").is_file())


def read_config(path):
    """The Layout a getlino config file names."""
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a getlino config file ({e})") from None
    d = cp.defaults()
    if not d.get("sites_base"):
        raise UsageError(f"{path}: not a getlino config file (no sites_base in [DEFAULT])")
    return Layout(Path(d["sites_base"]), d.get("local_prefix") or "lino_local", Path(path),
                  Path(d.get("supervisor_dir") or "/etc/supervisor/conf.d"))


def layout_of(project, configs=None):
    """The getlino Layout *project* is a site of (its parent a package with the
    shared settings.py), naming the first of *configs* that has it; or None."""
    local = project.parent
    if not ((local / "__init__.py").is_file() and (local / "settings.py").is_file()):
        return None
    for path in configs if configs is not None else config_files():
        if not Path(path).is_file():
            continue
        try:
            found = read_config(path)
        except UsageError:
            continue
        if found.local_dir.resolve() == local.resolve():
            return found
    return Layout(local.parent, local.name)


def running(proc=Path("/proc")):
    """The pid of a running getlino (its command, ``getlino`` or ``python -m getlino``),
    or None: it may be writing a site or the config that adopt reads."""
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [os.path.basename(a) for a in argv[:2]]
        if b"getlino" in names or argv[1:3] == [b"-m", b"getlino"]:
            return int(d.name)
    return None


def find_layout(config=None):
    """The Layout of this host's getlino: from *config*, else the first config
    file found (:func:`config_files`)."""
    if config:
        if not Path(config).is_file():
            raise UsageError(f"{config}: no such getlino config file")
        return read_config(config)
    for path in config_files():
        if path.is_file():
            return read_config(path)
    raise UsageError("no getlino config file found (" + ", ".join(map(str, config_files()))
                     + "): name one with --getlino CONFIG")
