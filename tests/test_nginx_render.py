"""The rendered nginx config, model in, text out; and Debian's nginx accepts it (no site)."""

import subprocess
from pathlib import Path

import pytest

from linohost.keeper.paths import SiteSockets
from linohost.model.config import HostConfig
from linohost.render import apache as render_apache
from linohost.render import nginx as render_nginx
from test_tls_render import mount

NGINX = Path("/usr/sbin/nginx")


def render(mode="off", address="*:443", default=False, **keys):
    cfg = HostConfig({"tls.mode": mode, "server_name": "example.org", **keys})
    mounts = [mount("a"), mount("b", ("shop.example.com", "b.localhost"))]
    listen = render_apache.Listen(address, "example.org", "https" if mode != "off" else "http")
    names = render_apache.vhost_names(mounts, listen)
    tls = None
    if mode == "files":
        certs = {n: (f"/c/{n}.crt", f"/c/{n}.key") for n in names}
        tls = render_apache.tls_of(cfg, names, certs, 443, redirect_from="*:80")
    sockets = {m.name: SiteSockets(f"/r/run/sockets/{m.name}.sock", f"/r/{m.name}/apache/ws.sock")
               for m in mounts}
    return render_nginx.sites_conf(mounts, listen, sockets, "/r/nginx/htdocs", timeout=300,
                                   tls=tls, default=default)


def test_prefix_and_own_host_sites_go_to_their_sockets():
    text = render(address="*:80")
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines.count("listen 80;") == 2 and "ssl" not in text
    assert "server_name example.org;" in lines
    assert "server_name shop.example.com b.localhost;" in lines
    assert "location = /a {" in lines and "return 301 /a/;" in lines
    assert "location /a/ {" in lines and "location / {" in lines       # b on its own host
    assert lines.count("proxy_pass http://unix:/r/run/sockets/a.sock:;") == 1
    # /WS/: the worker's own websocket socket (gone while the site sleeps)
    assert lines.count("proxy_pass http://unix:/r/a/apache/ws.sock:;") == 1
    assert "location /a/WS/ {" in lines and "location /WS/ {" in lines
    assert lines.count("proxy_http_version 1.1;") == 2
    assert lines.count('proxy_set_header Connection "upgrade";') == 2
    for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for",
                   "X-Forwarded-Proto $scheme"):
        assert lines.count(f"proxy_set_header {header};") == 4, header
    assert 'alias "/r/a/media/";' in lines and 'alias "/r/envs/e/static/";' in lines
    assert "autoindex off;" in lines and "proxy_read_timeout 300s;" in lines
    assert "Strict-Transport-Security" not in text            # no TLS: no security headers
    assert "default_server" not in text


def test_files_mode_certificates_headers_and_redirects():
    text = render("files", default=True)
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines.count("listen 443 ssl default_server;") == 1
    assert 'ssl_certificate "/c/shop.example.com.crt";' in lines
    assert 'ssl_certificate_key "/c/example.org.key";' in lines
    assert '"" "max-age=31536000";' in lines
    assert lines.count("add_header Strict-Transport-Security $linohost_hsts always;") == 2
    assert "return 301 https://example.org$request_uri;" in lines
    assert "return 301 https://shop.example.com$request_uri;" in lines
    assert lines.count("listen 80;") == 2
    no_hsts = render("files", **{"tls.hsts_max_age": 0})
    assert "Strict-Transport-Security" not in no_hsts and "nosniff" in no_hsts


@pytest.mark.skipif(not NGINX.exists(), reason="Debian's nginx is not installed")
@pytest.mark.parametrize("mode", ["off", "files"])
def test_nginx_accepts_the_rendered_config(tmp_path, mode):
    from tlsca import make_ca
    sites = render(mode, address="127.0.0.1:1")
    if mode == "files":
        ca = make_ca(tmp_path / "ca")
        sites = sites.replace('"/c/', '"CERTS/').replace(".crt", ".pem")
        for n in ("example.org", "shop.example.com"):
            sites = sites.replace(f'"CERTS/{n}.pem"', f'"{ca["cert"]}"')
            sites = sites.replace(f'"CERTS/{n}.key"', f'"{ca["key"]}"')
    (tmp_path / "sites.conf").write_text(sites)
    conf = render_nginx.embedded_conf(
        prefix=tmp_path, run_dir=tmp_path, logs_dir=tmp_path, user=None, group=None,
        sites_conf_path=tmp_path / "sites.conf", mime_types="/etc/nginx/mime.types")
    (tmp_path / "nginx.conf").write_text(conf)
    (tmp_path / "tmp").mkdir()
    p = subprocess.run([str(NGINX), "-t", "-q", "-p", f"{tmp_path}/", "-c",
                        str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
