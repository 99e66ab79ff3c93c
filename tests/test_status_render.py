"""/_linohost/ in the rendered front-server configs: model in, text out."""
from linohost.keeper.paths import SiteSockets
from linohost.render import apache as render_apache
from linohost.render import nginx as render_nginx
from test_tls_render import Backend, mount


def test_nginx_sends_status_to_the_keeper_and_sets_the_client_address():
    mounts = [mount("a")]
    listen = render_apache.Listen("*:80", "example.org", "http")
    sockets = {"a": SiteSockets("/r/run/sockets/a.sock", "/r/a/apache/ws.sock")}
    text = render_nginx.sites_conf(mounts, listen, sockets, "/r/htdocs", timeout=300,
                                   status_socket="/r/run/sockets/_linohost.sock")
    block = text.split("location /_linohost/ {", 1)[1].split("}", 1)[0]
    assert "proxy_pass http://unix:/r/run/sockets/_linohost.sock:;" in block
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in block
    assert "_linohost" not in render_nginx.sites_conf(mounts, listen, sockets, "/r/htdocs",
                                                      timeout=300)


def test_apache_main_vhost_carries_the_backends_host_directives():
    text = render_apache.sites_conf([mount("a")], render_apache.Listen("*:80", "example.org"),
                                    Backend(), "/r/htdocs")
    vhost = text.split("<VirtualHost *:80>", 1)[1].split("</VirtualHost>", 1)[0]
    assert "# host" in vhost
