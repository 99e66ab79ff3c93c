"""`linohost init`: create or reconfigure a host root."""

import os
import secrets

from ..backends.process import process_backend
from ..model import config, tls
from ..errors import UsageError
from ..model.host import Host
from ..render import site as render_site
from . import envs, keys, users
from .context import Context
from ..fs import atomic_write, write_secret
from .system import System

SMTP_PASSWORD = keys.SMTP_PASSWORD


def init(root, changes, progress=lambda m: None, smtp_password=None, force=False):
    """Create the host root (or apply *changes* to an existing one); return the Host.
    *smtp_password* (if given) replaces secrets/smtp.password; *force* overwrites a
    site's settings.py edited above its marker line (a dated copy is kept)."""
    root = Host.resolve_root(root).absolute()
    cfg_path = root / config.FILENAME
    old_cfg = config.load(cfg_path) if cfg_path.exists() else config.HostConfig({}, cfg_path)
    cfg = old_cfg.replace(**{k: v for k, v in changes.items() if v is not None})
    host = Host(root, cfg)
    system = System(cfg, host.home_dir)   # fails early if the web server's user is missing
    tls.check(cfg)
    if smtp_password is not None and not smtp_password:
        raise UsageError("the SMTP password file is empty")
    urls_change = cfg["mode"] != old_cfg["mode"] or cfg["server_name"] != old_cfg["server_name"]
    from .sites import own_settings, write_settings
    old_host = Host(root, old_cfg)
    # Each site's own settings, before anything changes: an edited file is refused here.
    owns = {s.name: own_settings(host, s, force, before=(old_host, s))
            for s in (old_host.sites() if cfg_path.exists() else ())}

    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    ctx = Context(host, system, progress)
    # As root, secrets/, home/ and logs/ are root's (users.host_dirs); an older host's
    # are changed by the migration below, which says so.
    as_root = users.host_dirs(ctx) if system.is_root else {}
    for d, mode in ((host.local_dir, 0o755), (host.envs_dir, 0o755), (host.registry_dir, 0o755),
                    (host.logs_dir, 0o755), (host.run_dir, 0o711), (host.secrets_dir, 0o700),
                    (host.home_dir, 0o700)):
        if d in as_root:
            if not d.exists():
                d.mkdir()
                os.chown(d, *as_root[d][:2])
                os.chmod(d, as_root[d][2])
            continue
        d.mkdir(exist_ok=True)
        os.chmod(d, mode)

    key_file = keys.HOST_KEYS.get(cfg["secret_policy"])
    if key_file and not (host.secrets_dir / key_file).exists():
        progress(f"generating {host.secrets_dir / key_file}")
        write_secret(host.secrets_dir / key_file, secrets.token_urlsafe(48))

    if smtp_password:
        progress(f"writing {host.secrets_dir / SMTP_PASSWORD}")
        write_secret(host.secrets_dir / SMTP_PASSWORD, smtp_password)
    # Root only: it may hold the database servers' admin passwords.
    atomic_write(cfg_path, config.dumps(cfg), mode=0o600 if system.is_root else 0o644)
    migrate(ctx)
    write_local_module(host)
    for site in host.sites():         # a changed mode or policy reaches every site
        own = owns.get(site.name)
        for note in own.notes if own else ():
            progress(note)
        write_settings(host, site, system.owner_of(site.name), restart=not urls_change, own=own)
        if urls_change:               # the front end's cached JS holds the site's URLs
            progress(f"rebuilding the caches of {site.name} for its new address")
            envs.run_site_tasks(ctx, host.env(site.env), host.site_dir(site.name), ["cache"])
            # Only now: a process that started before the cache was rebuilt keeps
            # the old version stamp, and React then reloads its page forever.
            process_backend(host).restart_site(site.name)
    return host


def migrate(ctx):
    """Say what differs from one user per site and its own secrets (a host made by an
    older linohost, or a changed secret policy), then change it."""
    plan = users.migration(ctx)
    if not plan:
        return
    ctx.progress(f"{len(plan)} changes for one Unix user per site and their own secrets:")
    for what, _ in plan:
        ctx.progress(f"  - {what}")
    for what, change in plan:
        change()
    ctx.progress("done: every site has its own user, files and secrets")


def write_local_module(host):
    """(Re)generate djangosite_local.py, keeping the operator's part, and the
    Lino plugin that sites under a URL prefix install."""
    path = host.local_dir / "djangosite_local.py"
    operator = None
    if path.exists():
        operator = render_site.operator_part_of(path.read_text(encoding="utf-8"))
    atomic_write(path, render_site.djangosite_local(host.cfg, host.secrets_dir, operator))
    plugin = host.local_dir / render_site.PREFIX_PLUGIN
    plugin.mkdir(mode=0o755, exist_ok=True)
    atomic_write(plugin / "__init__.py", render_site.prefix_plugin())
