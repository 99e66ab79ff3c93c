"""What `linohost adopt` learns of a foreign Lino project, and the own settings part
it gives the adopted site (pure: probe data in, text out)."""

import ast
import json
from dataclasses import dataclass, field

#: Site attributes linohost sets itself from the site record (not carried as own).
RECORD_ATTRS = {"languages", "default_ui", "title", "site_prefix"}
#: Site attributes that name the old place or its services (getlino's): not carried.
PLACE_ATTRS = {"server_url", "use_systemd"}
#: Settings linohost provides for every site: carried commented out, without value.
PROVIDED = {"DATABASES", "SECRET_KEY", "STATIC_ROOT", "STATIC_URL", "MEDIA_ROOT", "MEDIA_URL",
            "ALLOWED_HOSTS", "DEBUG", "SITE_HOSTNAMES",
            # the host's outgoing mail ([mail] of its config)
            "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_USE_SSL", "EMAIL_HOST_USER",
            "EMAIL_HOST_PASSWORD", "DEFAULT_FROM_EMAIL", "SERVER_EMAIL"}
#: What the source is, by what its settings imported.
KINDS = {"getlino": "getlino site", "seed": "seed layout (djangosite_local)",
         "project": "Lino project"}


def given_settings(cfg):
    """{setting: value} that every new site of a host with config *cfg* gets (from
    its djangosite_local.py) and that a source may also set: carried only if it differs."""
    out = {"TIME_ZONE": cfg["time_zone"]}
    if cfg["admin_email"]:
        out["ADMINS"] = [("Administrator", cfg["admin_email"])]
    return out


def same_value(text, value):
    """Whether the literal *text* (a probe's repr) is *value*, lists and tuples alike."""
    try:
        return json.dumps(ast.literal_eval(text)) == json.dumps(value)
    except (ValueError, SyntaxError, TypeError):
        return False


def key_row(policy, key):
    """What becomes of the source's SECRET_KEY under the host's secret *policy*."""
    if not key:
        return "none in the source: the site gets linohost's"
    if policy == "env":
        return "not kept: the env policy gives every site DJANGO_SECRET_KEY (sessions end)"
    return "kept as the site's own (signed-in users stay signed in)"


@dataclass
class Plan:
    source: str                 # the project directory
    python: str                 # its interpreter
    paths: list                 # added to its sys.path
    settings_file: str
    database: object            # its database (apply.sourcedb.Database)
    media_kib: int
    site: object                # the new site's record (model.site.Site)
    own: str                    # the new site's own settings part
    notes: list = field(default_factory=list)
    kind: str = "project"       # a key of KINDS
    config: str = ""            # getlino's config file naming it, if found
    key: str = field(default="", repr=False)   # the SECRET_KEY to keep ("": none)
    key_note: str = ""          # what becomes of its SECRET_KEY (key_row)
    old_services: list = field(default_factory=list)   # apply.oldservices.OldService
    supervisor_dir: str = ""    # where its supervisor programs are ("": Debian's)
    move: bool = False          # --db move: the site keeps the source's database
    env_pins: list = field(default_factory=list)   # a new environment's ([]: an existing one)

    def stopped_first(self, service):
        """Whether the old *service* is stopped before the source is copied (a
        background one, or any under --db move), not once the adopted site is checked."""
        return self.move or service.background

    def rows(self):
        s = self.site
        return [("source", self.source), ("kind", KINDS[self.kind]),
                *([("getlino config", self.config)] if self.config else []),
                ("python", self.python),
                ("name", s.name), ("app", s.app),
                ("environment", f"{s.env}: new, built from its pip freeze ({len(self.env_pins)} "
                                f"packages)" if self.env_pins else s.env),
                ("languages", " ".join(s.languages)), ("admin", s.admin), ("front end", s.front_end),
                ("plugins of its own", " ".join(s.plugins) or "none"),
                ("database", f"move: {self.database.describe()}, kept where it is; its "
                             f"user gets a new password" if self.move else
                             f"copy: {self.database.describe()} into a new {s.db} database"),
                ("media", f"{self.media_kib} KiB"),
                ("SECRET_KEY", self.key_note),
                ("settings carried", str(sum(1 for ln in self.own.splitlines()
                                             if ln and not ln.startswith("#")))),
                ("old services stopped", "; ".join(
                    s.describe() + (", first" if self.stopped_first(s) else ", once checked")
                    for s in self.old_services) or "none found")]

    def as_dict(self):
        return {"source": self.source, "kind": self.kind, "getlino_config": self.config,
                "python": self.python, "name": self.site.name,
                "app": self.site.app, "env": self.site.env, "new_env": list(self.env_pins),
                "db": self.site.db,
                "languages": list(self.site.languages), "front_end": self.site.front_end,
                "plugins": list(self.site.plugins),
                "database": self.database.describe(), "db_mode": "move" if self.move else "copy",
                "media_kib": self.media_kib, "own": self.own,
                "notes": self.notes, "secret_key_kept": bool(self.key),
                "old_services": [{"kind": s.kind, "path": s.path, "programs": list(s.programs),
                                  "first": self.stopped_first(s)}
                                 for s in self.old_services]}


def own_part(probe, source, given=None):
    """The own settings part for a site whose settings read as *probe*; and notes.
    *given*: what the host gives every site (:func:`given_settings`), not repeated."""
    lines = [f"# Settings of its own, carried by `linohost adopt` from {source}."]
    notes = []
    given = given or {}
    for k, v in sorted(probe["attrs"].items()):
        if k in RECORD_ATTRS:
            continue
        if k in PLACE_ATTRS:
            lines.append(f"# SITE.{k}: of the old place, not carried")
            continue
        if v is None:
            lines.append(f"# SITE.{k}: not a plain value, not carried")
            notes.append(f"Site attribute {k} is not a plain value: set it by hand")
        else:
            lines.append(f"SITE.{k} = {v}")
    for app, key, v in probe["plugin_configs"]:
        if v is None:
            lines.append(f"# plugin setting {app}.{key}: not a plain value, not carried")
            notes.append(f"plugin setting {app}.{key} is not a plain value: set it by hand")
        else:
            lines.append(f"SITE.plugins.{app}.{key} = {v}")
    for k, v in sorted(probe["settings"].items()):
        if k in given and v is not None and same_value(v, given[k]):
            continue
        if k in PROVIDED:
            lines.append(f"# {k}: linohost provides it (the old value is not carried)")
        elif v is None:
            lines.append(f"# {k}: not a plain value, not carried")
            notes.append(f"setting {k} is not a plain value: set it by hand")
        else:
            lines.append(f"{k} = {v}")
    plugins, dropped = probe.get("plugins", []), probe.get("plugins_dropped", [])
    for name in sorted(probe["methods"]):
        if name == "get_plugin_configs":
            continue
        if name == "get_installed_plugins" and not dropped:
            lines.append(f"# Site.get_installed_plugins(): its own plugins are the site's "
                         f"plugins ({', '.join(plugins) or 'none'})")
            continue
        lines.append(f"# Site.{name}(): a method of the old Site class, not carried")
        notes.append(f"Site.{name}() is not carried: add it to a plugin or the app"
                     + (f" (it leaves out {', '.join(dropped)})"
                        if name == "get_installed_plugins" else ""))
    return "\n".join(lines) + "\n", notes
