"""`linohost config apache` against Debian's apache2: configtest before install."""

import os
import subprocess
from pathlib import Path

import pytest

from runner import host_config

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/apache2ctl").exists(),
                                reason="Debian's apache2 is not installed")

CONFDIR = Path("/etc/apache2")


@pytest.fixture
def target(host):
    """A sites-available file of this test, removed (and disabled) afterwards."""
    name = f"linohost-test-{os.getpid()}"
    path = CONFDIR / "sites-available" / f"{name}.conf"
    mods_before = set(os.listdir(CONFDIR / "mods-enabled"))
    with host_config(host, **{"apache.config_path": str(path)}):
        yield path
    (CONFDIR / "sites-enabled" / path.name).unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    for m in set(os.listdir(CONFDIR / "mods-enabled")) - mods_before:
        (CONFDIR / "mods-enabled" / m).unlink()


@pytest.mark.parametrize("backend", ["keeper", "mod_wsgi"])
def test_check_passes_for_the_rendered_config(host, cosi_sites, backend):
    with host_config(host, process_backend=backend):
        p = host("config", "apache", "--check")
        assert "configtest passed" in p.stderr
        text = host("config", "apache").stdout
    for name in cosi_sites.values():
        if backend == "mod_wsgi":
            assert f"WSGIDaemonProcess {name} " in text
            assert f'python-home="{host.root}/envs/default"' in text
        else:
            assert (f'ProxyPass "/{name}/" "unix:{host.root}/run/sockets/{name}.sock|'
                    f'http://localhost/{name}/"') in text
            assert f'ProxyPass "/{name}/media/" "!"' in text
    assert ("WSGIRestrictEmbedded On" in text) == (backend == "mod_wsgi")
    assert ("WSGIDaemonProcess" in text) == (backend == "mod_wsgi")


@pytest.mark.skipif(os.geteuid() != 0, reason="writes to /etc/apache2")
@pytest.mark.parametrize("backend", ["keeper", "mod_wsgi"])
def test_write_installs_enables_and_refuses_a_broken_config(host, cosi_sites, target, backend):
    with host_config(host, process_backend=backend):
        _write_installs_enables_and_refuses_a_broken_config(host, target, backend)


def _write_installs_enables_and_refuses_a_broken_config(host, target, backend):
    host("config", "apache", "--write")
    good = target.read_bytes()
    assert (CONFDIR / "sites-enabled" / target.name).resolve() == target
    for module in ("wsgi",) if backend == "mod_wsgi" else ("proxy", "proxy_http", "headers"):
        assert (CONFDIR / "mods-enabled" / f"{module}.load").exists()
    assert subprocess.run(["apache2ctl", "-t"], capture_output=True).returncode == 0
    assert host("config", "apache", "--diff").stdout == ""   # nothing would change

    with host_config(host, **{"apache.extra_directives": "ThisIsNotADirective on"}):
        diff = host("config", "apache", "--diff").stdout
        assert "+    ThisIsNotADirective on" in diff
        assert target.read_bytes() == good                    # --diff writes nothing
        for args in (("--check",), ("--write",)):
            p = host("config", "apache", *args, check=False)
            assert p.returncode != 0
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and "configtest failed" in lines[0], p.stderr
            assert "ThisIsNotADirective" in lines[0]
            assert target.read_bytes() == good                # the live file stays
    assert subprocess.run(["apache2ctl", "-t"], capture_output=True).returncode == 0
