"""The HTTPS parts of the rendered Apache config, model in, text out (no server)."""

from linohost.model.config import HostConfig
from linohost.render import apache as render_apache


class Backend:
    name = "keeper"              # what the vhosts ask of a backend: its name and directives

    def server_directives(self):
        return "# server"

    def host_directives(self):
        return "# host"

    def site_directives(self, mount):
        return f"# site {mount.name} over {mount.scheme}"


def mount(name, server_names=()):
    return render_apache.Mount(
        name=name, title=name, url="", url_path="" if server_names else f"/{name}",
        server_names=server_names, project=f"/r/{name}", wsgi=f"/r/{name}/apache/wsgi.py",
        media=f"/r/{name}/media", static="/r/envs/e/static", python_home="/r/envs/e",
        scheme="https")


def render(mode, **keys):
    cfg = HostConfig({"tls.mode": mode, "server_name": "example.org", **keys})
    mounts = [mount("a"), mount("b", ("shop.example.com",))]
    listen = render_apache.Listen("*:443", "example.org", "https")
    names = render_apache.vhost_names(mounts, listen)
    certs = {n: (f"/c/{n}.crt", f"/c/{n}.key") for n in names} if mode == "files" else {}
    tls = render_apache.tls_of(cfg, names, certs, 443, redirect_from="*:80")
    return render_apache.sites_conf(mounts, listen, Backend(), "/r/htdocs", tls=tls)


def test_files_mode_one_certificate_per_vhost_and_redirects():
    text = render("files")
    assert text.count("SSLEngine on") == 2
    assert 'SSLCertificateFile "/c/shop.example.com.crt"' in text
    assert 'SSLCertificateKeyFile "/c/example.org.key"' in text
    assert 'Redirect permanent "/" "https://example.org/"' in text
    assert 'Redirect permanent "/" "https://shop.example.com/"' in text
    assert text.count("<VirtualHost *:80>") == 2 and text.count("<VirtualHost *:443>") == 2
    assert "MDomain" not in text
    assert "# site a over https" in text          # what a proxying backend needs


def test_acme_mode_renders_mod_md():
    text = render("acme", **{"tls.acme_email": "ops@example.org",
                             "tls.acme_ca_file": "/etc/ssl/test-ca.pem"})
    for line in ("MDCertificateAuthority https://acme-v02.api.letsencrypt.org/directory",
                 "MDCertificateAgreement accepted", "MDContactEmail ops@example.org",
                 'MDCACertificateFile "/etc/ssl/test-ca.pem"',
                 "MDomain example.org", "MDomain shop.example.com"):
        assert line in text.splitlines(), line
    assert "SSLCertificateFile" not in text


def test_no_tls_no_change():
    mounts = [mount("a")]
    text = render_apache.sites_conf(mounts, render_apache.Listen("*:80", "example.org"),
                                    Backend(), "/r/htdocs")
    assert "SSL" not in text and "Redirect permanent" not in text
