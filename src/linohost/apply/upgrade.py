"""`linohost upgrade`: move the sites of an environment to a new, upgraded one.

The live environment is never changed in place. A new one is built with the
upgraded packages; then each site (the canary first) moves under its
maintenance page: it is backed up (native database dump and Lino's portable
dump, made with the old code), switched to the new environment, and the
portable dump's ``restore.py`` loads the data into the new code's tables (Lino
apps ship no Django migrations: this *is* Lino's data migration). A site that
fails is switched back and its backup restored; the others go on. Every move is
journaled, so a killed upgrade leaves each site on its old or its new state
after the next linohost command. The old environment is removed when no site
uses it any more.
"""

import dataclasses
import re
from dataclasses import dataclass

from ..errors import StepFailed, UsageError
from ..model import apps, config
from . import envs
from .backup import backup
from ..fs import atomic_write, remove_tree
from .journal import Journal, undo_step
from .maintenance import maintenance
from .restore import load_portable, opened
from .sites import own_settings, write_settings


@dataclass
class Moved:
    site: str
    ok: bool
    env: str               # where the site is now
    message: str


def _name(spec):
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def new_package_list(old_packages, upgrades):
    """The old list with each upgraded package's spec replaced (or added)."""
    wanted = {_name(u): u for u in upgrades}
    out = [wanted.pop(_name(p), p) for p in old_packages]
    return out + list(wanted.values())


def next_env_name(host, name):
    base = re.sub(r"-\d+$", "", name)
    taken = set(host.env_names())
    n = 2
    while f"{base}-{n}" in taken or (host.envs_dir / f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def plan(host, env_name, canary=None):
    """The sites to move, canary first; bad input raises UsageError (and a site's
    settings.py edited above its marker line, EditedSettings)."""
    host.env(env_name)
    sites = [s for s in host.sites() if s.env == env_name]
    if not sites:
        raise UsageError(f"no site uses environment {env_name!r}: nothing to upgrade")
    if canary:
        if canary not in [s.name for s in sites]:
            raise UsageError(f"canary {canary!r} is not a site of environment {env_name!r}")
        sites.sort(key=lambda s: s.name != canary)
    return sites


def settle_settings(ctx, sites, force):
    """Check each site's settings.py before anything is built; one written by an older
    linohost (or edited, with *force*) is rewritten now with its own part below the marker."""
    owns = {s.name: own_settings(ctx.host, s, force) for s in sites}
    for s in sites:
        for note in owns[s.name].notes:
            ctx.progress(note)
        if owns[s.name].notes:
            write_settings(ctx.host, s, ctx.system.owner_of(s.name), restart=False,
                           own=owns[s.name])


def upgrade(ctx, env_name, upgrades=(), canary=None, force=False):
    """Upgrade the sites of *env_name*; return (new env name, [Moved]). *force*: see
    :func:`settle_settings`."""
    host = ctx.host
    old = host.env(env_name)
    sites = plan(host, env_name, canary)
    settle_settings(ctx, sites, force)
    new_name = next_env_name(host, env_name)
    # Killed before the end, the repair removes the new environment if no site moved to it.
    outer = Journal(host, "upgrade", f"env-{env_name}").start(
        [{"kind": "env_if_unused", "name": new_name}])
    ctx.progress(f"building environment {new_name} (the live {env_name} stays as it is)")
    new = envs.create(ctx, new_name, new_package_list(old.packages, upgrades))
    report = []
    for s in sites:
        moved = move_site(ctx, s, old, new)
        report.append(moved)
        ctx.progress(f"{s.name}: {'moved to ' + new.name if moved.ok else moved.message}")
        if not moved.ok and s.name == canary:
            report += [Moved(o.name, False, old.name, "not moved: the canary failed")
                       for o in sites[1:]]
            break
    finish(ctx, old, new)
    outer.commit()
    return new.name, report


def move_site(ctx, site, old, new):
    """Move one site from *old* to *new*; on failure put it back. Returns Moved."""
    host = ctx.host
    project = host.site_dir(site.name)
    journal = Journal(host, "upgrade", site.name).start()
    try:
        with maintenance(host, site, "upgraded", journal):
            # Backed up under the maintenance page: nothing changes after it.
            archive_path = backup(ctx, site, portable=True)
            journal.record("reload_archive", site=site.name, archive=str(archive_path))
            journal.record("site_env", site=site.name, env=old.name)
            switch_env(ctx, site, new.name)
            ctx.progress(f"{site.name}: loading its data into {new.name}")
            new = envs.ensure_app(ctx, host.env(new.name), apps.resolve(site.app), project)
            with opened(host, archive_path) as (manifest, data):
                load_portable(ctx, site, new, data / "portable")
            app = apps.resolve(site.app)
            static = envs.has_static(new, app, site.front_end)
            tasks = ["cache"] if static else ["static", "cache"]
            envs.run_site_tasks(ctx, new, project, tasks)
            if "static" in tasks:
                envs.mark_static(new, app, site.front_end)
            _manage(ctx, new, project, ["check"])
    except StepFailed as e:
        ctx.progress(f"{site.name}: failed ({e}); restoring it on {old.name}")
        errors = journal.undo(ctx, log=ctx.progress)
        msg = f"failed and restored on {old.name}: {e}"
        if errors:
            msg = f"failed, and restoring it failed too: {errors[0]}"
        return Moved(site.name, False, old.name, msg)
    journal.commit()
    return Moved(site.name, True, new.name, f"moved (backup: {archive_path.name})")


def switch_env(ctx, site, env_name):
    """Point *site* at environment *env_name*: registry record and settings."""
    host = ctx.host
    site = dataclasses.replace(host.site(site.name), env=env_name)
    write_settings(host, site, ctx.system.owner_of(site.name))
    atomic_write(host.registry_dir / f"{site.name}.toml", site.dumps())
    return site


def finish(ctx, old, new):
    """Remove whichever environment no site uses; retarget default_env."""
    host = ctx.host
    used = {s.env for s in host.sites()}
    if new.name not in used:
        _remove_env(ctx, new, "no site moved to it")
        return
    if old.name in used:
        ctx.progress(f"environment {old.name} is still used: kept")
        return
    if host.cfg["default_env"] == old.name:
        host.cfg = host.cfg.replace(default_env=new.name)
        atomic_write(host.config_path, config.dumps(host.cfg))
        ctx.progress(f"default_env is now {new.name}")
    _remove_env(ctx, old, "no site uses it")


def _remove_env(ctx, env, why):
    ctx.progress(f"removing environment {env.name}: {why}")
    Journal(ctx.host, "rm", f"env-{env.name}").start(
        [{"kind": "tree", "path": env.path}]).undo(ctx)


def _manage(ctx, env, project, args):
    return ctx.system.run([env.bin_python, project / "manage.py", *args], as_site=project.name,
                          cwd=project, what=f"manage.py {args[0]} ({project.name})")


@undo_step("env_if_unused")
def _undo_env_if_unused(ctx, name):
    host = ctx.host
    if (host.envs_dir / name).exists() and not any(s.env == name for s in host.sites()):
        remove_tree(host.envs_dir / name)


@undo_step("site_env")
def _undo_site_env(ctx, site, env):
    if ctx.host.has_site(site) and ctx.host.site(site).env != env:
        switch_env(ctx, ctx.host.site(site), env)
