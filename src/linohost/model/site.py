"""A site's record: what linohost knows about one Lino site."""

from dataclasses import dataclass

from .record import Record


@dataclass(frozen=True)
class Site(Record):
    name: str
    app: str                    # short name or settings module
    settings_module: str
    env: str
    db: str                     # engine: sqlite, postgresql, mysql
    title: str
    languages: tuple = ("en",)
    front_end: str = "react"    # react or extjs
    domain: str = ""            # own host name (its own vhost), or ""
    db_name: str = ""           # server databases: database and user name
    admin: str = ""             # the first admin of a site made empty (Lino's commands
                                # sign in as it: users.demo_username)
    created: str = ""
    # Its own fence ([limits]; 0: the host's): worker memory (MiB), CPU weight, tasks.
    memory_limit: int = 0
    cpu_weight: int = 0
    tasks_limit: int = 0
    # Installed plugins of its own beyond its app's (Lino's local_apps; an adopted
    # site's get_installed_plugins() added them): they change what Lino builds.
    plugins: tuple = ()

    @property
    def db_user(self):
        return self.db_name
