"""`linohost init`: create or reconfigure a host root."""

import os
import secrets
import shutil

from ..model import config
from ..model.host import Host
from ..render import site as render_site
from ..errors import UsageError
from ..render.site import PREFIX_FRONT_ENDS
from . import envs
from .context import Context
from .files import atomic_write, write_secret
from .system import System


def init(root, changes, progress=lambda m: None):
    """Create the host root (or apply *changes* to an existing one); return the Host."""
    root = Host.resolve_root(root).absolute()
    cfg_path = root / config.FILENAME
    old_cfg = config.load(cfg_path) if cfg_path.exists() else config.HostConfig({}, cfg_path)
    cfg = old_cfg.replace(**{k: v for k, v in changes.items() if v is not None})
    host = Host(root, cfg)
    system = System(cfg, host.home_dir)   # fails early if the site user is missing
    owner = system.site_owner
    urls_change = cfg["mode"] != old_cfg["mode"] or cfg["server_name"] != old_cfg["server_name"]
    if cfg["mode"] == "prefix":
        for site in host.sites():
            if host.site_prefix(site) != "/" and site.front_end not in PREFIX_FRONT_ENDS:
                raise UsageError(f"site {site.name} uses the {site.front_end} front end, "
                                 f"which does not work under a URL prefix: stay in domain mode")

    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for d, mode in ((host.local_dir, 0o755), (host.envs_dir, 0o755), (host.registry_dir, 0o755),
                    (host.logs_dir, 0o755), (host.run_dir, 0o700), (host.secrets_dir, 0o700),
                    (host.home_dir, 0o700)):
        d.mkdir(exist_ok=True)
        os.chmod(d, mode)
    if owner:
        shutil.chown(host.secrets_dir, *owner)
        shutil.chown(host.logs_dir, *owner)
        shutil.chown(host.home_dir, *owner)

    key_file = {"derived": "master.key", "shared": "shared.key"}.get(cfg["secret_policy"])
    if key_file and not (host.secrets_dir / key_file).exists():
        progress(f"generating {host.secrets_dir / key_file}")
        write_secret(host.secrets_dir / key_file, secrets.token_urlsafe(48), owner)

    atomic_write(cfg_path, config.dumps(cfg))
    write_local_module(host)
    from .sites import write_settings
    ctx = Context(host, system, progress)
    for site in host.sites():         # a changed mode or policy reaches every site
        write_settings(host, site, owner)
        if urls_change:               # the front end's cached JS holds the site's URLs
            progress(f"rebuilding the caches of {site.name} for its new address")
            envs.run_site_tasks(ctx, host.env(site.env), host.site_dir(site.name), ["cache"])
    return host


def write_local_module(host):
    """(Re)generate djangosite_local.py, keeping the operator's part."""
    path = host.local_dir / "djangosite_local.py"
    operator = None
    if path.exists():
        operator = render_site.operator_part_of(path.read_text(encoding="utf-8"))
    atomic_write(path, render_site.djangosite_local(host.cfg, host.secrets_dir, operator))
