"""Apache configuration for every site of a host: pure, from the registry.

One file of vhosts serves both `linohost serve` (embedded Apache) and the
system's Apache (`linohost config apache`); the embedded server adds a small
server config around it. How a site's requests reach its Python is up to the
process backend (:mod:`linohost.backends.process`).
"""

from dataclasses import dataclass

from . import render


@dataclass(frozen=True)
class Mount:
    """What Apache needs to know about one site."""
    name: str
    title: str
    url: str
    url_path: str          # "/NAME" under a prefix, "" on its own host name
    server_names: tuple    # own vhost: (ServerName, ServerAlias...); () under a prefix
    project: str
    wsgi: str
    media: str
    static: str            # the environment's collected static files
    python_home: str       # the environment's virtualenv


@dataclass(frozen=True)
class Listen:
    """Where the vhosts listen and how they are named."""
    address: str           # "127.0.0.1:8000" or "*:80"
    server_name: str


def mounts(host, port=None, local_aliases=False):
    """A :class:`Mount` for every site of *host*, in name order."""
    out = []
    for s in host.sites():
        env = host.env(s.env)
        project = host.site_dir(s.name)
        prefix = host.site_prefix(s)
        names = ()
        if prefix == "/":
            names = host.site_hostnames(s)[:None if local_aliases else 1]
        out.append(Mount(
            name=s.name, title=s.title, url=host.site_url(s, port),
            url_path=prefix.rstrip("/"), server_names=names, project=str(project),
            wsgi=str(project / "apache" / "wsgi.py"), media=str(project / "media"),
            static=env.static_root, python_home=env.path))
    return out


def sites_conf(mounts, listen, backend, htdocs, extra=""):
    """The vhosts of all *mounts*: one file, included by any Apache."""
    return render(
        "apache/sites.conf.j2",
        listen=listen,
        prefixed=[m for m in mounts if not m.server_names],
        own_hosts=[m for m in mounts if m.server_names],
        statics=sorted({m.static for m in mounts}),
        backend=backend,
        htdocs=htdocs,
        extra=extra.strip(),
    )


def index_html(mounts, server_name):
    """The page at `/` of the server: every site with its link."""
    return render("apache/index.html.j2", mounts=mounts, server_name=server_name)


def embedded_conf(*, server_root, listen, run_dir, logs_dir, user, group, module_lines,
                  sites_conf_path, mime_types):
    """The server config of the embedded Apache that includes the vhosts file."""
    return render(
        "apache/httpd.conf.j2",
        server_root=server_root, listen=listen, run_dir=run_dir, logs_dir=logs_dir,
        user=user, group=group, module_lines=module_lines,
        sites_conf_path=sites_conf_path, mime_types=mime_types,
    )
