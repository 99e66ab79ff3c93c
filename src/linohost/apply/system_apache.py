"""`linohost config apache`: the system's (Debian's) apache2 serving all sites.

A new config is tested by Apache itself before it replaces the live file: the
configtest runs on a copy of the whole Apache config directory with the
candidate in place, so a config that fails is never installed.
"""

import difflib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..backends.process import process_backend
from ..errors import StepFailed, UsageError
from ..model import tls
from ..render import apache as render_apache
from . import users
from ..fs import atomic_write

CONFDIR = Path(os.environ.get("APACHE_CONFDIR", "/etc/apache2"))


def vhosts(ctx):
    """(mounts, listen, tls) of a system web server's vhosts (Apache's or nginx's)."""
    cfg = ctx.cfg
    tls.check(cfg)
    port = cfg["tls.https_port"] if tls.enabled(cfg) else cfg["apache.vhost_port"]
    mounts = render_apache.mounts(ctx.host, port)
    listen = render_apache.Listen(f"*:{port}", cfg["server_name"], tls.scheme(cfg))
    vhost_tls = None
    if tls.enabled(cfg):
        names = render_apache.vhost_names(mounts, listen)
        vhost_tls = render_apache.tls_of(cfg, names, tls.certificates(cfg, names), port,
                                         redirect_from=f"*:{cfg['apache.vhost_port']}")
    return mounts, listen, vhost_tls


def render(ctx):
    """(vhosts text, landing page text) for the system Apache."""
    cfg = ctx.cfg
    backend = process_backend(ctx.host, user=cfg["site_user"], group=cfg["site_group"],
                              run_as=users.run_as(ctx))
    mounts, listen, vhost_tls = vhosts(ctx)
    htdocs = ctx.host.root / "apache" / "htdocs"
    return (render_apache.sites_conf(mounts, listen, backend, htdocs,
                                     cfg["apache.extra_directives"], vhost_tls),
            render_apache.index_html(mounts, cfg["server_name"]))


def _target(ctx):
    return Path(ctx.cfg["apache.config_path"])


def diff_file(target, new):
    """The unified diff from the installed *target* (or nothing) to the text *new*."""
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        str(target), f"{target} (new)"))


def diff(ctx):
    return diff_file(_target(ctx), render(ctx)[0])


def _apache2ctl():
    exe = shutil.which("apache2ctl")
    if not exe or not CONFDIR.is_dir():
        raise UsageError("Debian's apache2 is not installed: "
                         "apt-get install apache2 libapache2-mod-wsgi-py3")
    return exe


def _modules(ctx):
    return process_backend(ctx.host).apache_modules + tls.apache_modules(ctx.cfg)


def configtest(ctx, text):
    """Run `apache2ctl -t` on a copy of the Apache config with *text* installed."""
    exe = _apache2ctl()
    target = _target(ctx)
    with tempfile.TemporaryDirectory(prefix="linohost-apache-") as tmp:
        mirror = Path(tmp) / "apache2"
        shutil.copytree(CONFDIR, mirror, symlinks=True)
        try:
            rel = target.relative_to(CONFDIR)
        except ValueError:
            rel = Path("sites-available") / target.name
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_text(text, encoding="utf-8")
        _enable(mirror, rel, _modules(ctx))
        p = subprocess.run([exe, "-t"], capture_output=True, text=True,
                           env={**os.environ, "APACHE_CONFDIR": str(mirror)})
    if p.returncode != 0:
        text = (p.stderr + p.stdout).replace(str(mirror), str(CONFDIR))
        raise StepFailed(f"Apache configtest failed: {_first_error(text)}", output=text)


def _first_error(text):
    """Apache's error in one line: "Syntax error on line N of F: <reason>"."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "Syntax error" in ln:
            return " ".join(lines[i:i + 2])
    return lines[0] if lines else "no output"


def _enable(confdir, site_rel, modules):
    """Enable *modules* and the site *site_rel* in *confdir* the way a2enmod/a2ensite do."""
    for m in modules:
        for ext in ("load", "conf"):
            src = confdir / "mods-available" / f"{m}.{ext}"
            link = confdir / "mods-enabled" / f"{m}.{ext}"
            if src.exists() and not link.exists():
                link.symlink_to(f"../mods-available/{m}.{ext}")
            elif ext == "load" and not src.exists():
                raise UsageError(f"Apache module {m} is not installed"
                                 + (": apt-get install libapache2-mod-wsgi-py3"
                                    if m == "wsgi" else ""))
    if site_rel.parts[0] == "sites-available":
        link = confdir / "sites-enabled" / site_rel.name
        if not link.exists():
            link.symlink_to(f"../sites-available/{site_rel.name}")


def check(ctx):
    configtest(ctx, render(ctx)[0])


def write(ctx):
    """Test, then atomically install, enable and gracefully reload."""
    text, index = render(ctx)
    configtest(ctx, text)
    target = _target(ctx)
    write_landing(ctx.host.root / "apache" / "htdocs", index)
    old = target.read_text(encoding="utf-8") if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text)
    ctx.progress(f"wrote {target}")
    try:
        exe = _apache2ctl()
        subprocess.run(["a2enmod", "-q", *_modules(ctx)], check=True, capture_output=True)
        if target.parent == CONFDIR / "sites-available":
            subprocess.run(["a2ensite", "-q", target.stem], check=True, capture_output=True)
        p = subprocess.run([exe, "-t"], capture_output=True, text=True)
        if p.returncode != 0:
            raise StepFailed(f"Apache configtest failed after installing: "
                             f"{(p.stderr.strip().splitlines() or ['?'])[-1]}")
    except BaseException:
        if old is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write(target, old)
        raise
    if not graceful(ctx):
        ctx.progress("Apache is not running: the config takes effect when it starts")


def graceful(ctx):
    """Reload the system Apache gracefully (no request is cut) if it runs; whether it did."""
    if not running():
        return False
    ctx.system.run([_apache2ctl(), "graceful"], what="apache2ctl graceful")
    ctx.progress("Apache reloaded gracefully")
    return True


def write_landing(htdocs, index):
    """Install the landing page *index* in *htdocs*, readable by the web server."""
    htdocs.mkdir(parents=True, exist_ok=True)
    os.chmod(htdocs.parent, 0o755)
    os.chmod(htdocs, 0o755)
    atomic_write(htdocs / "index.html", index)


def serves(cfg):
    """Whether the system Apache runs with this host's config installed."""
    return running() and Path(cfg["apache.config_path"]).exists()


def running():
    pid_file = Path("/var/run/apache2/apache2.pid")
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False
