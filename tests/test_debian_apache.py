"""`linohost serve` on Debian's Apache binary, and the choice between it and the
Apache built from PyPI (mod-wsgi-standalone)."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from hoststate import site_pids
from serving import announced, free_port, start_serve, stop_serve
from linohost.backends.web import DebianApache, EmbeddedApache, serve_apache, serve_modules
from linohost.backends.web.base import BASE_MODULES
from linohost.errors import UsageError
from linohost.model.host import Host

APACHE2 = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
debian_only = pytest.mark.skipif(not (MODULES / "mod_wsgi.so").exists(),
                                 reason="apache2 and libapache2-mod-wsgi-py3 are not installed")
WSGI_SITES = (*BASE_MODULES, "wsgi", "alias")
PROXY_SITES = (*BASE_MODULES, "proxy", "proxy_http", "headers")


def exe_of(pid):
    return Path(os.readlink(f"/proc/{pid}/exe"))


@debian_only
@pytest.mark.slow
def test_sites_are_served_by_debians_binary(host, server, cosi_sites):
    """The session's server (tests/test_apache.py's sites) runs /usr/sbin/apache2 with
    Debian's modules: under mod_wsgi each site's daemon is its child, with Debian's
    mod_wsgi; under the keeper Apache proxies (Debian's mod_proxy_http) to workers
    that are not its children."""
    pid = int((host.root / "apache" / "run" / "httpd.pid").read_text())
    assert exe_of(pid) == APACHE2
    conf = (host.root / "apache" / "run" / "httpd.conf").read_text()
    mod_wsgi = f'LoadModule wsgi_module "{MODULES}/mod_wsgi.so"' in conf
    assert mod_wsgi == (server.backend == "mod_wsgi")
    if server.backend == "keeper":
        assert f'LoadModule proxy_http_module "{MODULES}/mod_proxy_http.so"' in conf
    assert "/etc/apache2" not in conf and 'ServerRoot "%s/apache"' % host.root in conf
    name = cosi_sites["sqlite"]
    assert requests.get(server.url(name)).status_code == 200
    worker = site_pids(host)[name]
    if server.backend == "mod_wsgi":
        assert exe_of(worker) == APACHE2
    else:
        assert exe_of(worker).name.startswith("python")
        assert pid not in parents(worker)
    assert "(Debian's Apache, pid" in announced(host, server.port, "serving ")


def parents(pid):
    """The pids above *pid*, up to 1."""
    out = []
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


SYSTEM_DIRS = ("/etc/apache2", "/run/apache2", "/var/run/apache2", "/var/log/apache2")


@debian_only
def test_debians_binary_leaves_the_system_apache_alone(bare):
    """Own server root, config, pid file and logs: nothing of the system's Apache is
    read (its config includes) or held open."""
    port = free_port()
    s = start_serve(bare, port, timeout=60)
    try:
        pid = int((bare.root / "apache" / "run" / "httpd.pid").read_text())
        assert exe_of(pid) == APACHE2
        assert requests.get(s.base + "/").status_code == 200
        assert "(Debian's Apache, pid" in announced(bare, port, "serving 0 sites")
        conf = bare.root / "apache" / "run" / "httpd.conf"
        dump = subprocess.run([APACHE2, "-d", conf.parent.parent, "-f", conf, "-t",
                               "-D", "DUMP_INCLUDES"], capture_output=True, text=True)
        assert dump.returncode == 0, dump.stderr
        included = [ln.split()[-1] for ln in dump.stdout.splitlines()[1:]]
        assert str(conf) in included and str(conf.parent / "sites.conf") in included
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert any(f.startswith(str(bare.root / "logs")) for f in held), held
        for path in included + held:
            assert not path.startswith(SYSTEM_DIRS), path
    finally:
        assert stop_serve(s) == 0
    assert not Path(f"/proc/{pid}").exists()


def test_the_process_backend_names_the_modules(bare):
    h = Host.open(bare.root)
    from linohost.backends.process import process_backend
    assert serve_modules(process_backend(h)) == (*PROXY_SITES, "alias")     # the keeper
    h.cfg = h.cfg.replace(process_backend="mod_wsgi")
    assert serve_modules(process_backend(h)) == WSGI_SITES
    if not APACHE2.exists():
        pytest.skip("apache2 is not installed")
    debian = DebianApache(h)
    lines = debian.module_lines(WSGI_SITES)
    assert f'LoadModule wsgi_module "{MODULES}/mod_wsgi.so"' in lines
    assert any(ln.startswith("WSGISocketPrefix") for ln in lines)
    # log_config and unixd are compiled into Debian's binary: not loaded again
    assert not any("log_config_module" in ln or "unixd_module" in ln for ln in lines)
    # a proxying backend: its modules, and no mod_wsgi lines at all
    lines = debian.module_lines(PROXY_SITES)
    assert f'LoadModule proxy_http_module "{MODULES}/mod_proxy_http.so"' in lines
    assert not any("wsgi" in ln.lower() for ln in lines)


def _modules_dir_without(tmp_path, *left_out):
    """A copy (symlinks) of Debian's module directory lacking *left_out*."""
    d = tmp_path / "modules"
    d.mkdir()
    for so in MODULES.iterdir():
        if so.name not in left_out:
            (d / so.name).symlink_to(so.resolve())
    return d


@pytest.mark.skipif(not APACHE2.exists(), reason="apache2 is not installed")
def test_choice_of_apache(bare, tmp_path):
    h = Host.open(bare.root)
    no_wsgi = DebianApache(h, modules_dir=_modules_dir_without(tmp_path, "mod_wsgi.so",
                                                               "mod_wsgi.so-3.11"))
    not_installed = DebianApache(h, binary=tmp_path / "no-apache2")

    def choose(choice, modules, debian):
        return type(serve_apache(h, modules, choice, debian=debian))

    # auto: Debian's when it has every module, else the one from PyPI
    assert choose("auto", WSGI_SITES, DebianApache(h)) is DebianApache
    assert choose("auto", WSGI_SITES, no_wsgi) is EmbeddedApache
    assert choose("auto", WSGI_SITES, not_installed) is EmbeddedApache
    assert choose("auto", PROXY_SITES, no_wsgi) is DebianApache   # needs no mod_wsgi
    assert choose("embedded", WSGI_SITES, DebianApache(h)) is EmbeddedApache
    # debian, when it cannot: one line naming the packages to install
    with pytest.raises(UsageError, match="apt-get install libapache2-mod-wsgi-py3$"):
        choose("debian", WSGI_SITES, no_wsgi)
    with pytest.raises(UsageError, match="apt-get install apache2 libapache2-mod-wsgi-py3$"):
        choose("debian", WSGI_SITES, not_installed)


@pytest.mark.slow
def test_embedded_apache_still_serves(bare):
    """apache.server = "embedded": the Apache built from PyPI (cached wheel after the first)."""
    cfg = bare.root / "linohost.toml"
    cfg.write_text(cfg.read_text() + '\n[apache]\nserver = "embedded"\n')
    port = free_port()
    s = start_serve(bare, port)
    try:
        pid = int((bare.root / "apache" / "run" / "httpd.pid").read_text())
        assert exe_of(pid).name == "httpd"
        assert str(bare.root / "apache" / "venv") in str(exe_of(pid))
        assert requests.get(s.base + "/").status_code == 200
        assert "(Apache from PyPI" in announced(bare, port, "serving 0 sites")
    finally:
        assert stop_serve(s) == 0


@pytest.mark.slow
def test_wait_answering_names_what_does_not_answer(server, cosi_sites, domain_sites):
    """What `serve --wait-sites` waits for, against the session's server: each site's
    page (a domain site by its Host header), and a page that never answers 200."""
    from linohost.apply.ready import wait_answering
    sites = [server.url(n) for n in cosi_sites.values()]
    sites += [server.url(d) for d in domain_sites.values()]
    missing = server.base + "/nosuchsite/"
    assert wait_answering(sites, "127.0.0.1", server.port, lambda: True, timeout=300) == []
    t = time.monotonic()
    late = wait_answering([sites[0], missing], "127.0.0.1", server.port, lambda: True, timeout=3)
    assert late == [missing] and time.monotonic() - t < 10
    assert wait_answering(sites, "127.0.0.1", server.port, lambda: False, timeout=20) == sites
