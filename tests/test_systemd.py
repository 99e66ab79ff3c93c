"""`linohost config systemd`: boot-time units and log rotation, checked by systemd's
and logrotate's own tools, written atomically and reconciled."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from linohost.apply import system_units
from linohost.apply.context import Context
from linohost.apply.system import System
from linohost.errors import StepFailed
from linohost.model.host import Host
from linohost.render import systemd as render_systemd

pytestmark = pytest.mark.skipif(not (shutil.which("systemd-analyze") and shutil.which("logrotate")),
                                reason="systemd-analyze or logrotate is not installed")


def configure(h, text):
    """Append TOML *text* to the host config of *h*."""
    cfg = h.root / "linohost.toml"
    cfg.write_text(cfg.read_text() + "\n" + text)


@pytest.fixture
def dirs(bare, tmp_path):
    """The host's units and logrotate snippet go to directories of this test."""
    units, logrotate = tmp_path / "units", tmp_path / "logrotate.d"
    units.mkdir()
    logrotate.mkdir()
    configure(bare, f'[systemd]\nunit_dir = "{units}"\n[logrotate]\npath = "{logrotate}/lh"\n')
    return units, logrotate / "lh"


def context(h):
    host = Host.open(h.root)
    return Context(host, System(host.cfg))


def test_units_per_process_backend(bare):
    root, exe = bare.root, "/usr/bin/linohost"
    keeper = render_systemd.units(root=root, linohost=exe, process_backend="keeper",
                                  backup_calendar="daily")
    wsgi = render_systemd.units(root=root, linohost=exe, process_backend="mod_wsgi",
                                backup_calendar="daily")
    nginx_dropin = render_systemd.DROPINS["nginx"]
    assert set(keeper) == set(render_systemd.MANAGED) - {nginx_dropin}
    assert set(wsgi) == set(render_systemd.MANAGED) - {render_systemd.KEEPER, nginx_dropin}
    unit = keeper[render_systemd.KEEPER].splitlines()
    assert f"ExecStart={exe} --root {root} keeper" in unit
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit
    after = [ln for ln in unit if ln.startswith("After=")][0].split("=")[1].split()
    assert {"postgresql.service", "mariadb.service"} <= set(after)
    # the system Apache: after the databases, and under the keeper after it too
    dropin = keeper[render_systemd.APACHE_DROPIN].splitlines()
    assert "Wants=linohost-keeper.service" in dropin
    assert "Restart=on-failure" in dropin
    assert "linohost-keeper" not in wsgi[render_systemd.APACHE_DROPIN]
    assert "Restart=on-failure" in wsgi[render_systemd.APACHE_DROPIN]
    # under nginx the same drop-in, for nginx.service instead
    nginx = render_systemd.units(root=root, linohost=exe, process_backend="keeper",
                                 backup_calendar="daily", web_server="nginx")
    assert render_systemd.APACHE_DROPIN not in nginx
    assert nginx[nginx_dropin].replace("nginx", "X") \
        == keeper[render_systemd.APACHE_DROPIN].replace("Apache", "X").replace("apache", "X")
    assert "Wants=linohost-keeper.service" in nginx[nginx_dropin].splitlines()
    backup = wsgi[render_systemd.BACKUP].splitlines()
    assert backup.index(f"ExecStart={exe} --root {root} backup --all") \
        < backup.index(f"ExecStart={exe} --root {root} prune")
    assert "OnCalendar=daily" in wsgi[render_systemd.BACKUP_TIMER]


def test_keeper_units_pass_systemd_analyze_verify(bare, dirs):
    """The keeper backend is the lead's: its units are rendered from a cfg that names
    it, then checked by systemd-analyze as `--check` does (ExecStart must exist:
    it is the linohost that runs this test)."""
    ctx = context(bare)
    units_dir, logrotate = dirs
    texts = render_systemd.units(root=bare.root, linohost=system_units.linohost_command(),
                                 process_backend="keeper", backup_calendar="*-*-* 03:15:00")
    files = {units_dir / rel: t for rel, t in texts.items()}
    files[logrotate] = render_systemd.logrotate(logs=bare.root / "logs", keep_weeks=4)
    system_units.check(ctx, files)
    # and it does fail: a keeper unit whose program does not exist
    bad = dict(files)
    bad[units_dir / render_systemd.KEEPER] = texts[render_systemd.KEEPER].replace(
        system_units.linohost_command(), "/nonexistent/linohost")
    with pytest.raises(StepFailed, match="not executable"):
        system_units.check(ctx, bad)


def test_check_failure_is_one_line_and_writes_nothing(bare, dirs):
    units_dir, logrotate = dirs
    configure(bare, '')
    cfg = bare.root / "linohost.toml"
    cfg.write_text(cfg.read_text().replace(
        "[systemd]\n", '[systemd]\nbackup_calendar = "every full moon"\n'))
    for args in (("--check",), ("--write",)):
        p = bare("config", "systemd", *args, check=False)
        assert p.returncode == 1
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        assert lines[0].startswith("linohost: error: systemd-analyze verify failed: "
                                   f"{units_dir}/linohost-backup.timer:")
        assert "every full moon" in lines[0]
    assert list(units_dir.iterdir()) == [] and not logrotate.exists()


def test_diff_write_reconcile(bare, dirs):
    units_dir, logrotate = dirs
    bare("init", "--process-backend", "mod_wsgi")     # the keeper's unit: see above
    diff = bare("config", "systemd", "--diff").stdout
    for rel in ("linohost-backup.service", "linohost-backup.timer",
                "apache2.service.d/linohost.conf"):
        assert f"+++ {units_dir / rel} (new)" in diff
    assert "linohost-keeper" not in diff              # process_backend is mod_wsgi
    assert list(units_dir.iterdir()) == []            # --diff writes nothing

    p = bare("config", "systemd", "--write")
    assert f"wrote {units_dir}/linohost-backup.timer" in p.stderr
    assert "not enabled" in p.stderr                  # not the system's unit directory
    if not Path("/run/systemd/system").exists():
        assert "systemd is not running here: no daemon-reload" in p.stderr
    assert "OnCalendar=*-*-* 03:15:00" in (units_dir / "linohost-backup.timer").read_text()
    assert oct(os.stat(logrotate).st_mode & 0o777) == "0o644"
    assert bare("config", "systemd", "--diff").stdout == ""    # nothing would change
    again = bare("config", "systemd", "--write").stderr
    assert "wrote" not in again and "removed" not in again       # idempotent

    # a changed key changes one file; a keeper unit of ours left from an earlier
    # backend is removed; a file of someone else's with that name is not touched
    cfg = bare.root / "linohost.toml"
    cfg.write_text(cfg.read_text().replace("[systemd]\n", '[systemd]\nbackup_calendar = "daily"\n'))
    stale = units_dir / "linohost-keeper.service"
    stale.write_text(render_systemd.HEADER + " ...\n[Service]\nExecStart=/bin/true\n")
    diff = bare("config", "systemd", "--diff").stdout
    assert "+OnCalendar=daily" in diff and f"{stale} (removed)" in diff
    assert "linohost-backup.service" not in diff
    p = bare("config", "systemd", "--write")
    assert f"removed {stale}" in p.stderr and not stale.exists()
    assert "OnCalendar=daily" in (units_dir / "linohost-backup.timer").read_text()
    stale.write_text("[Service]\nExecStart=/bin/true\n")        # not ours
    assert bare("config", "systemd", "--diff").stdout == ""
    bare("config", "systemd", "--write")
    assert stale.exists()


def test_logrotate_rotates_the_logs(bare, dirs, tmp_path):
    """The written snippet, run by logrotate itself: copied, truncated in place
    (a writer keeps its file open), compressed on the next round."""
    units_dir, snippet = dirs
    bare("config", "systemd", "--write")
    log = bare.root / "logs" / "apache-error.log"
    log.write_text("line 1\n")
    with open(log, "a") as writer:                     # as Apache holds it
        state = tmp_path / "state"
        subprocess.run(["logrotate", "-f", "-s", state, snippet], check=True)
        assert (log.parent / "apache-error.log.1").read_text() == "line 1\n"
        assert log.read_text() == ""
        writer.write("line 2\n")
        writer.flush()
        assert log.read_text() == "line 2\n"
        subprocess.run(["logrotate", "-f", "-s", state, snippet], check=True)
    assert (log.parent / "apache-error.log.2.gz").exists()       # delaycompress
    assert (log.parent / "apache-error.log.1").read_text() == "line 2\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemctl"),
                    reason="writes to /etc/systemd/system")
def test_write_enables_the_timer_in_the_system(bare, tmp_path):
    """Into /etc/systemd/system: the timer is enabled for boot (systemctl enable works
    without a running systemd); removed again afterwards."""
    configure(bare, f'[logrotate]\npath = "{tmp_path}/lh"\n')
    bare("init", "--process-backend", "mod_wsgi")     # no keeper unit in the system
    written = [Path("/etc/systemd/system") / rel for rel in
               ("linohost-backup.service", "linohost-backup.timer",
                "apache2.service.d/linohost.conf")]
    if any(p.exists() for p in written):
        pytest.skip("this machine has linohost units already")
    try:
        p = bare("config", "systemd", "--write")
        assert "enabled at boot: linohost-backup.timer" in p.stderr
        r = subprocess.run(["systemctl", "is-enabled", "linohost-backup.timer"],
                           capture_output=True, text=True)
        assert r.stdout.strip() == "enabled"
        assert f"--root {bare.root} backup --all" in written[0].read_text()
    finally:
        subprocess.run(["systemctl", "disable", "-q", "linohost-backup.timer"])
        for path in written:
            path.unlink(missing_ok=True)
        dropins = Path("/etc/systemd/system/apache2.service.d")
        if dropins.is_dir() and not any(dropins.iterdir()):
            dropins.rmdir()


def test_nginx_orders_nginx_and_replaces_the_apache_dropin(bare, dirs):
    """web_server nginx: the drop-in is nginx.service's (checked with the system's
    nginx.service), and switching from Apache removes Apache's."""
    units_dir, _ = dirs
    bare("config", "systemd", "--write")
    assert (units_dir / render_systemd.APACHE_DROPIN).exists()
    bare("init", "--web-server", "nginx")
    assert "configtest" not in bare("config", "systemd", "--check").stderr
    diff = bare("config", "systemd", "--diff").stdout
    assert f"+++ {units_dir / render_systemd.DROPINS['nginx']} (new)" in diff
    assert f"+++ {units_dir / render_systemd.APACHE_DROPIN} (removed)" in diff
    bare("config", "systemd", "--write")
    assert not (units_dir / render_systemd.APACHE_DROPIN).exists()
    assert "After=postgresql.service" in (units_dir / render_systemd.DROPINS["nginx"]).read_text()
