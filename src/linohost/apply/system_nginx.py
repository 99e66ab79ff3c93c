"""`linohost config nginx`: the system's (Debian's) nginx serving all sites.

As for Apache, a new config is tested by nginx itself before it replaces the
live file: `nginx -t` runs on a copy of the whole config directory (its paths
pointing into the copy) with the candidate in place, so a config that fails is
never installed. nginx reaches the sites only through the keeper's sockets.

Under ``tls.mode = "acme"`` certbot (Debian's package, with its webroot plugin: it
needs no access to nginx's config and no restart) obtains a certificate per vhost
name; until it has, a self-signed placeholder stands in (as mod_md's fallback
certificate does), so that nginx runs and serves the challenges on plain HTTP.
Renewals (Debian's certbot.timer) reload nginx: no site restarts.
"""

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..backends.web.nginx import first_error
from ..errors import StepFailed, UsageError
from ..fs import atomic_write
from ..keeper import paths as keeper_paths
from ..model import tls
from ..render import apache as render_apache
from ..render import nginx as render_nginx
from .system_apache import diff_file, vhosts, write_landing

SYSTEM_CONFDIR = Path("/etc/nginx")
CONFDIR = Path(os.environ.get("NGINX_CONFDIR", SYSTEM_CONFDIR))
BINARY = "/usr/sbin/nginx"
DEFAULT_CERTBOT_DIR = Path("/etc/letsencrypt")


def render(ctx):
    """(server blocks text, landing page text) for the system nginx."""
    cfg = ctx.cfg
    if cfg["process_backend"] != "keeper":
        raise UsageError("nginx serves the sites only through the keeper: "
                         "set process_backend = \"keeper\"")
    mounts, listen, vhost_tls = vhosts(ctx)
    webroot = ""
    if cfg["tls.mode"] == "acme":
        names = render_apache.vhost_names(mounts, listen)
        vhost_tls = dataclasses.replace(vhost_tls,
                                        certs={n: acme_certificate(ctx, n) for n in names})
        webroot = str(acme_dir(ctx) / "webroot")
    sockets = keeper_paths.site_sockets(ctx.host, [m.name for m in mounts])
    return (render_nginx.sites_conf(mounts, listen, sockets, htdocs(ctx),
                                    timeout=cfg["keeper.proxy_timeout"], tls=vhost_tls,
                                    acme_webroot=webroot,
                                    status_socket=keeper_paths.status_socket(ctx.host)),
            render_apache.index_html(mounts, cfg["server_name"]))


def acme_dir(ctx):
    return ctx.host.root / "acme"


def acme_certificate(ctx, name):
    """certbot's certificate of *name*, or while it has none the placeholder."""
    if all(p.exists() for p in tls.certbot_files(ctx.cfg, name)):
        return tuple(map(str, tls.certbot_files(ctx.cfg, name)))
    return str(acme_dir(ctx) / "placeholder.crt"), str(acme_dir(ctx) / "placeholder.key")


def _prepare_acme(ctx):
    """The challenges' webroot (readable by nginx) and the placeholder certificate."""
    d = acme_dir(ctx)
    challenges = d / "webroot" / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True, exist_ok=True)
    for p in (d, d / "webroot", challenges.parent, challenges):
        os.chmod(p, 0o755)
    if not (d / "placeholder.crt").exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "90", "-subj", "/CN=linohost placeholder",
                        "-keyout", str(d / "placeholder.key"),
                        "-out", str(d / "placeholder.crt")], check=True, capture_output=True)


def obtain(ctx):
    """certbot's certificate for each vhost name that has none; whether it got any."""
    cfg = ctx.cfg
    exe = shutil.which("certbot")
    if not exe:
        raise UsageError("tls.mode acme with nginx needs certbot: apt-get install certbot")
    mounts, listen, _ = vhosts(ctx)
    missing = [n for n in render_apache.vhost_names(mounts, listen)
               if not all(p.exists() for p in tls.certbot_files(cfg, n))]
    config_dir = Path(cfg["certbot.config_dir"])
    args = [exe, "certonly", "--non-interactive", "--agree-tos", "--webroot",
            "-w", str(acme_dir(ctx) / "webroot"), "--server", cfg["tls.acme_directory"],
            "--config-dir", str(config_dir)]
    if config_dir != DEFAULT_CERTBOT_DIR:
        args += ["--work-dir", str(config_dir / "work"), "--logs-dir", str(config_dir / "logs")]
    email = cfg["tls.acme_email"] or cfg["admin_email"]
    args += ["-m", email] if email else ["--register-unsafely-without-email"]
    if CONFDIR == SYSTEM_CONFDIR:          # kept for renewals: a reload restarts no site
        args += ["--deploy-hook", f"{BINARY} -s reload"]
    env = dict(os.environ)
    if cfg["tls.acme_ca_file"]:
        env["REQUESTS_CA_BUNDLE"] = cfg["tls.acme_ca_file"]
    for name in missing:
        ctx.progress(f"certbot: certificate for {name} from {cfg['tls.acme_directory']}")
        p = subprocess.run([*args, "--cert-name", name, "-d", name], capture_output=True,
                           text=True, env=env)
        if p.returncode != 0:
            lines = [ln.strip() for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            why = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "?")
            raise StepFailed(f"certbot got no certificate for {name}: {why}", output=p.stderr)
    return bool(missing)


def htdocs(ctx):
    return ctx.host.root / "nginx" / "htdocs"


def _target(ctx):
    return Path(ctx.cfg["nginx.config_path"])


def diff(ctx):
    return diff_file(_target(ctx), render(ctx)[0])


def _nginx():
    if not Path(BINARY).exists() or not (CONFDIR / "nginx.conf").exists():
        raise UsageError("Debian's nginx is not installed: apt-get install nginx")
    return BINARY


def mirror(src, dst):
    """Copy the nginx config directory *src* to *dst* with every path into *src* in its
    files (includes) pointing into *dst*; links become copies."""
    shutil.copytree(src, dst, symlinks=False)
    for path in Path(dst).rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if f"{src}/" in text:
            path.write_text(text.replace(f"{src}/", f"{dst}/"), encoding="utf-8")


def _enabled_link(confdir, rel):
    """The sites-enabled link of *rel* (relative to *confdir*), or None if it is elsewhere."""
    if rel.parts[0] != "sites-available":
        return None
    return confdir / "sites-enabled" / rel.name


def _rel(ctx):
    target = _target(ctx)
    try:
        return target.relative_to(CONFDIR)
    except ValueError:
        return Path("sites-available") / target.name


def _test(exe, confdir):
    """Run `nginx -t` on the config of *confdir*: (ok, its message in one line, output)."""
    p = subprocess.run([exe, "-t", "-q", "-c", str(confdir / "nginx.conf")],
                       capture_output=True, text=True)
    return p.returncode == 0, first_error(p.stderr), p.stderr


def configtest(ctx, text):
    """Run `nginx -t` on a copy of the nginx config with *text* installed."""
    exe = _nginx()
    rel = _rel(ctx)
    with tempfile.TemporaryDirectory(prefix="linohost-nginx-") as tmp:
        copy = Path(tmp) / "nginx"
        mirror(CONFDIR, copy)
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_text(text, encoding="utf-8")
        link = _enabled_link(copy, rel)
        if link and not link.exists():
            link.symlink_to(f"../sites-available/{rel.name}")
        ok, message, output = _test(exe, copy)
    if not ok:
        raise StepFailed(f"nginx configtest failed: {message.replace(str(copy), str(CONFDIR))}",
                         output=output.replace(str(copy), str(CONFDIR)))


def check(ctx):
    if ctx.cfg["tls.mode"] == "acme":
        _prepare_acme(ctx)
    configtest(ctx, render(ctx)[0])


def write(ctx):
    """Test, then atomically install, enable and reload; under acme then get the missing
    certificates and install the config again with them."""
    if ctx.cfg["tls.mode"] == "acme":
        _prepare_acme(ctx)
    _install(ctx)
    if ctx.cfg["tls.mode"] == "acme" and obtain(ctx):
        _install(ctx)


def _install(ctx):
    text, index = render(ctx)
    configtest(ctx, text)
    exe = _nginx()
    target = _target(ctx)
    write_landing(htdocs(ctx), index)
    old = target.read_text(encoding="utf-8") if target.exists() else None
    link = _enabled_link(CONFDIR, _rel(ctx))
    new_link = link is not None and not link.is_symlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text)
    ctx.progress(f"wrote {target}")
    try:
        if new_link:
            link.symlink_to(f"../sites-available/{target.name}")
        ok, message, _ = _test(exe, CONFDIR)
        if not ok:
            raise StepFailed(f"nginx configtest failed after installing: {message}")
    except BaseException:
        if old is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write(target, old)
        if new_link:
            link.unlink(missing_ok=True)
        raise
    if CONFDIR != SYSTEM_CONFDIR:
        ctx.progress(f"{CONFDIR} is not the system's nginx config: not reloading")
    elif not reload(ctx):
        ctx.progress("nginx is not running: the config takes effect when it starts")


def reload(ctx):
    """Reload the system nginx (no request is cut) if it runs with the system's config;
    whether it did."""
    if CONFDIR != SYSTEM_CONFDIR or not running():
        return False
    ctx.system.run([BINARY, "-s", "reload"], what="nginx reload")
    ctx.progress("nginx reloaded")
    return True


def running():
    try:
        os.kill(int(Path("/run/nginx.pid").read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False
