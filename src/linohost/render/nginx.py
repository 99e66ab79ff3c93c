"""nginx configuration for every site of a host: pure, from the same model as Apache's.

The mounts, listen address, TLS and landing page are those of
:mod:`linohost.render.apache`; only the syntax differs. nginx serves the sites
only through the keeper (each site's unix socket), so there is no process
backend to ask. One file of server blocks serves both `linohost serve` (inside
the small server config :func:`embedded_conf`) and the system's nginx
(`linohost config nginx`, included in its ``http {}``).
"""

from . import render


def listen_address(address):
    """nginx's `listen` of an Apache-style address: "*:80" -> "80"."""
    return address.removeprefix("*:")


def sites_conf(mounts, listen, sockets, htdocs, *, timeout, tls=None, default=False,
               acme_webroot="", status_socket=None):
    """The server blocks of all *mounts* (:class:`~.apache.Mount`); *sockets*: {site: its
    :class:`~..keeper.paths.SiteSockets`}; *timeout*: seconds a site may take to answer (a cold start's);
    *tls*: a :class:`~.apache.Tls` (HTTPS, plain HTTP redirected); *default*: the
    shared server answers any host name nobody else claims; *acme_webroot*: plain
    HTTP serves ACME challenges from there (certbot --webroot); *status_socket*: the
    keeper's own server, for /_linohost/ (:func:`~..keeper.paths.status_socket`)."""
    return render(
        "nginx/sites.conf.j2",
        listen=listen, address=listen_address(listen.address),
        prefixed=[m for m in mounts if not m.server_names],
        own_hosts=[m for m in mounts if m.server_names],
        statics=sorted({m.static for m in mounts}),
        sockets=sockets, htdocs=htdocs, timeout=timeout, tls=tls, default=default,
        acme_webroot=acme_webroot, status_socket=status_socket,
        redirect_from=listen_address(tls.redirect_from) if tls and tls.redirect_from else "",
    )


def embedded_conf(*, prefix, run_dir, logs_dir, user, group, sites_conf_path, mime_types):
    """The server config of the nginx run by `linohost serve`, around the sites file."""
    return render("nginx/nginx.conf.j2", prefix=prefix, run_dir=run_dir, logs_dir=logs_dir,
                  user=user, group=group, sites_conf_path=sites_conf_path,
                  mime_types=mime_types)
