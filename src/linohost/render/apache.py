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
    local_url: str = ""    # the URL on this machine, when it differs from url
    scheme: str = "http"   # how clients reach it: "https" when the vhost terminates TLS


@dataclass(frozen=True)
class Listen:
    """Where the vhosts listen and how they are named."""
    address: str           # "127.0.0.1:8000" or "*:80"
    server_name: str
    scheme: str = "http"   # "https": the vhosts terminate TLS (see :class:`Tls`)


@dataclass(frozen=True)
class Tls:
    """HTTPS of the vhosts: certificates, redirects, HSTS, ACME (mod_md)."""
    certs: dict                  # vhost name -> (cert file, key file); {} under ACME
    https_port: int              # in the URLs HTTP redirects to
    hsts_max_age: int            # 0: no Strict-Transport-Security header
    redirect_from: str = ""      # address of plain-HTTP vhosts that redirect ("*:80"), or ""
    plain_http_redirect: bool = False   # one port: plain HTTP on it is redirected (serve)
    acme: dict | None = None     # {directory, email, ca_file, domains}: mod_md lines

    def https_url(self, name):
        return f"https://{name}" + ("" if self.https_port == 443 else f":{self.https_port}")


def mounts(host, port=None, local_aliases=False):
    """A :class:`Mount` for every site of *host*, in name order."""
    from ..model import tls
    out = []
    for s in host.sites():
        env = host.env(s.env)
        project = host.site_dir(s.name)
        prefix = host.site_prefix(s)
        names = ()
        if prefix == "/":
            names = host.site_hostnames(s)[:None if local_aliases else 1]
        url = host.site_url(s, port)
        local = host.local_url(s, port) if local_aliases else url
        out.append(Mount(
            name=s.name, title=s.title, url=url, local_url="" if local == url else local,
            url_path=prefix.rstrip("/"), server_names=names, project=str(project),
            wsgi=str(project / "apache" / "wsgi.py"), media=str(project / "media"),
            static=env.static_root, python_home=env.path, scheme=tls.scheme(host.cfg)))
    return out


def vhost_names(mounts, listen):
    """The ServerName of every vhost: the shared one, then each own-host site's."""
    return [listen.server_name] + [m.server_names[0] for m in mounts if m.server_names]


def tls_of(cfg, names, certs, https_port, redirect_from="", plain_http_redirect=False):
    """The :class:`Tls` of the vhosts *names* under the host config *cfg*; *certs*: the
    (cert, key) files of each name in files mode."""
    acme = None
    if cfg["tls.mode"] == "acme":
        certs = {}
        acme = {"directory": cfg["tls.acme_directory"], "ca_file": cfg["tls.acme_ca_file"],
                "email": cfg["tls.acme_email"] or cfg["admin_email"], "domains": list(names)}
    return Tls(certs=certs, https_port=https_port, hsts_max_age=cfg["tls.hsts_max_age"],
               redirect_from=redirect_from, plain_http_redirect=plain_http_redirect, acme=acme)


def sites_conf(mounts, listen, backend, htdocs, extra="", tls=None):
    """The vhosts of all *mounts*: one file, included by any Apache; with *tls*
    (:class:`Tls`) they serve HTTPS and plain HTTP redirects to it."""
    return render(
        "apache/sites.conf.j2",
        listen=listen,
        prefixed=[m for m in mounts if not m.server_names],
        own_hosts=[m for m in mounts if m.server_names],
        statics=sorted({m.static for m in mounts}),
        backend=backend,
        htdocs=htdocs,
        extra=extra.strip(),
        tls=tls,
    )


#: Sites on one page of the landing page; beyond, it gets a search box and pages.
LANDING_PAGE = 50


def index_html(mounts, server_name, page=LANDING_PAGE):
    """The page at `/` of the server: every site with its link (more than *page*
    sites: a search box and pages of *page*, in the browser)."""
    return render("apache/index.html.j2", mounts=mounts, server_name=server_name,
                  page=page, paged=len(mounts) > page)


def embedded_conf(*, server_root, listen, run_dir, logs_dir, user, group, module_lines,
                  sites_conf_path, mime_types):
    """The server config of the embedded Apache that includes the vhosts file."""
    return render(
        "apache/httpd.conf.j2",
        server_root=server_root, listen=listen, run_dir=run_dir, logs_dir=logs_dir,
        user=user, group=group, module_lines=module_lines,
        sites_conf_path=sites_conf_path, mime_types=mime_types,
    )
