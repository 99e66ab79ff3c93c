"""The front server of `linohost serve` (host key ``web_server``) and the files it gets.

Apache (:class:`~..backends.web.base.OwnApache`: Debian's or one from PyPI) or
nginx (:class:`~..backends.web.nginx.OwnNginx`); :data:`FILES` renders each one's
config, sites and landing page from the registry. `serve` does the rest alike.
"""

from ..backends.process import process_backend
from ..backends.web import serve_apache, serve_modules
from ..backends.web.base import python_version, readable_by_all
from ..backends.web.nginx import OwnNginx
from ..errors import UsageError
from ..keeper import paths as keeper_paths
from ..model import tls
from ..render import apache as render_apache
from ..render import nginx as render_nginx
from . import users


def site_user(ctx):
    """(user, group) of Apache's own processes when it starts as root, else (None, None)."""
    if ctx.system.is_root:
        return ctx.cfg["site_user"], ctx.cfg["site_group"]
    return None, None


def embedded_files(ctx, apache, bind, port):
    """{path: text} of the served Apache's config, vhosts and landing page."""
    host, cfg = ctx.host, ctx.cfg
    user, group = site_user(ctx)
    backend = process_backend(host, user=user, group=group, run_as=users.run_as(ctx))
    mounts = render_apache.mounts(host, port, local_aliases=True)
    listen = render_apache.Listen(f"*:{port}", cfg["server_name"], tls.scheme(cfg))
    return {
        apache.sites_conf: render_apache.sites_conf(
            mounts, listen, backend, apache.htdocs, cfg["apache.extra_directives"],
            serve_tls(cfg, mounts, listen, port)),
        apache.htdocs / "index.html": render_apache.index_html(mounts, cfg["server_name"]),
        apache.conf: render_apache.embedded_conf(
            server_root=apache.server_root, listen=f"{bind}:{port}", run_dir=apache.run_dir,
            logs_dir=host.logs_dir, user=user, group=group,
            module_lines=apache.module_lines(modules(ctx, backend)), sites_conf_path=apache.sites_conf,
            mime_types=apache.mime_types),
    }


def nginx_files(ctx, nginx, bind, port):
    """{path: text} of the served nginx's config, server blocks and landing page."""
    host, cfg = ctx.host, ctx.cfg
    user, group = site_user(ctx)
    mounts = render_apache.mounts(host, port, local_aliases=True)
    address = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    listen = render_apache.Listen(address, cfg["server_name"], tls.scheme(cfg))
    sockets = keeper_paths.site_sockets(host, [m.name for m in mounts])
    return {
        nginx.sites_conf: render_nginx.sites_conf(
            mounts, listen, sockets, nginx.htdocs, timeout=cfg["keeper.proxy_timeout"],
            tls=serve_tls(cfg, mounts, listen, port), default=True,
            status_socket=keeper_paths.status_socket(host)),
        nginx.htdocs / "index.html": render_apache.index_html(mounts, cfg["server_name"]),
        nginx.conf: render_nginx.embedded_conf(
            prefix=nginx.dir, run_dir=nginx.run_dir, logs_dir=host.logs_dir, user=user,
            group=group, sites_conf_path=nginx.sites_conf, mime_types=nginx.mime_types),
    }


#: The files of each front server: {name: function(ctx, front, bind, port) -> {path: text}}.
FILES = {"apache": embedded_files, "nginx": nginx_files}


def front_server(ctx, lock):
    """The front server `serve` runs (host key web_server), installed."""
    if ctx.cfg["web_server"] == "nginx":
        front = OwnNginx(ctx.host)
        front.check_installed()
        return front
    apache = serve_apache(ctx.host, modules(ctx, process_backend(ctx.host)),
                          ctx.cfg["apache.server"])
    ensure_installed(ctx, apache, lock)
    return apache


def serve_tls(cfg, mounts, listen, port):
    """HTTPS on serve's one port (files mode; ACME needs the system Apache's mod_md,
    so under acme serve tries tls.cert_file/key_file), plain HTTP redirected to it."""
    if not tls.enabled(cfg):
        return None
    names = render_apache.vhost_names(mounts, listen)
    files = cfg.replace(tls__mode="files")
    return render_apache.tls_of(files, names, tls.certificates(files, names), port,
                                plain_http_redirect=True)


def modules(ctx, backend):
    """Debian names of the Apache modules `serve` loads: the base ones, the process
    backend's, and HTTPS's (mod_md runs only in the system Apache)."""
    return (*serve_modules(backend),
            *(m for m in tls.apache_modules(ctx.cfg) if m != "md"))


def check_pythons(ctx, apache):
    """Every environment must run under this mod_wsgi's Python, readable by the site user
    (when the process backend runs the sites in mod_wsgi)."""
    if "wsgi" not in process_backend(ctx.host).apache_modules:
        return
    want = apache.python_version()
    for env in ctx.host.envs():
        got = python_version(env.bin_python)
        if got != want:
            raise UsageError(
                f"environment {env.name} uses Python {got} but mod_wsgi runs {want}: "
                f"recreate it with the host's python ({ctx.cfg['python']})")
        if ctx.system.is_root and not readable_by_all(env.bin_python):
            raise UsageError(f"the site user cannot read {env.bin_python}: "
                             f"use a Python outside root's home (host config key `python`)")


def ensure_installed(ctx, apache, lock):
    if not apache.installed():
        with lock:
            if not apache.installed():
                apache.install(ctx.system, ctx.progress)
