"""An environment's record: a virtualenv shared by many sites."""

from dataclasses import dataclass

from .record import Record


@dataclass(frozen=True)
class Env(Record):
    FILENAME = "linohost-env.toml"

    name: str
    path: str
    python: str
    packages: tuple = ()
    apps_installed: tuple = ()   # apps whose `manage.py install` requirements are in
    static_apps: tuple = ()      # "APP+FRONT_END" whose static files are in static/
    created: str = ""

    @property
    def bin_python(self):
        return f"{self.path}/bin/python"

    @property
    def static_root(self):
        return f"{self.path}/static"
