"""`linohost config systemd`: boot-time units and log rotation for the host.

Render -> diff -> check -> write, as `config apache` does: the units are
checked by `systemd-analyze verify` and the logrotate snippet by `logrotate -d`
in a temporary directory before anything live is replaced. Writing reconciles:
files that changed are replaced atomically, files of ours that are no longer
wanted (e.g. the keeper unit after a switch to mod_wsgi) are removed.
"""

import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import StepFailed, UsageError
from ..render import systemd as render_systemd
from ..fs import atomic_write

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def linohost_command():
    """How the units run this linohost: its script beside the running Python."""
    script = Path(sys.executable).parent / "linohost"
    return str(script) if script.exists() else f"{sys.executable} -m linohost"


def render(ctx):
    """{absolute path: text} of every file this host wants."""
    cfg = ctx.cfg
    unit_dir = Path(cfg["systemd.unit_dir"])
    units = render_systemd.units(root=ctx.host.root, linohost=linohost_command(),
                                 process_backend=cfg["process_backend"],
                                 backup_calendar=cfg["systemd.backup_calendar"],
                                 web_server=cfg["web_server"])
    files = {unit_dir / rel: text for rel, text in units.items()}
    files[Path(cfg["logrotate.path"])] = render_systemd.logrotate(
        logs=ctx.host.logs_dir, keep_weeks=cfg["logrotate.keep_weeks"])
    return files


def _stale(ctx, files):
    """Files of ours that exist but are no longer wanted."""
    unit_dir = Path(ctx.cfg["systemd.unit_dir"])
    return [p for p in (unit_dir / rel for rel in render_systemd.MANAGED)
            if p not in files and p.exists() and _ours(p)]


def _ours(path):
    return path.read_text(encoding="utf-8").startswith(render_systemd.HEADER)


def diff(ctx):
    files = render(ctx)
    out = []
    for path, text in files.items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        out += difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                    str(path), f"{path} (new)")
    for path in _stale(ctx, files):
        out += difflib.unified_diff(path.read_text(encoding="utf-8").splitlines(True), [],
                                    str(path), f"{path} (removed)")
    return "".join(out)


def show(ctx):
    return "".join(f"# ---- {path}\n{text}\n" for path, text in render(ctx).items())


def check(ctx, files=None):
    """`systemd-analyze verify` the units and `logrotate -d` the snippet, in a temp dir."""
    files = files or render(ctx)
    unit_dir = Path(ctx.cfg["systemd.unit_dir"])
    logrotate_path = Path(ctx.cfg["logrotate.path"])
    analyze, logrotate = shutil.which("systemd-analyze"), shutil.which("logrotate")
    if not analyze or not logrotate:
        raise UsageError("systemd-analyze and logrotate are needed to check the units: "
                         "apt-get install systemd logrotate")
    with tempfile.TemporaryDirectory(prefix="linohost-systemd-") as tmp:
        tmp = Path(tmp)
        for path, text in files.items():
            rel = path.relative_to(unit_dir) if path != logrotate_path else "logrotate.conf"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")
        _verify_units(analyze, tmp, unit_dir, files)
        _verify_logrotate(logrotate, tmp, logrotate_path)


def _verify_units(analyze, tmp, unit_dir, files):
    # Our unit files by path; the system web server by name, with our drop-in found
    # through the unit path (trailing ":" keeps the system's directories).
    names = [str(tmp / p.relative_to(unit_dir)) for p in files
             if p.parent == unit_dir and p.suffix in (".service", ".timer")]
    names += [p.parent.name.removesuffix(".d") for p in files
              if p.parent.name.endswith(".service.d")
              and _unit_exists(p.parent.name.removesuffix(".d"))]
    p = subprocess.run([analyze, "verify", *names], capture_output=True, text=True,
                       env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp}:"})
    ours = [ln.replace(str(tmp), str(unit_dir)) for ln in (p.stderr + p.stdout).splitlines()
            if str(tmp) in ln or "linohost" in ln]
    if p.returncode != 0 or ours:
        raise StepFailed(f"systemd-analyze verify failed: {(ours or [p.stderr.strip()])[0]}",
                         output=p.stderr)


def _unit_exists(name):
    return any(Path(d, name).exists() for d in ("/etc/systemd/system", "/lib/systemd/system",
                                                "/usr/lib/systemd/system"))


def _verify_logrotate(logrotate, tmp, target):
    p = subprocess.run([logrotate, "-d", "-s", str(tmp / "logrotate.state"),
                        str(tmp / "logrotate.conf")], capture_output=True, text=True)
    errors = [ln.replace(str(tmp / "logrotate.conf"), str(target))
              for ln in (p.stderr + p.stdout).splitlines() if ln.startswith("error:")]
    if p.returncode != 0 or errors:
        raise StepFailed(f"logrotate -d failed: {(errors or [p.stderr.strip()])[0]}",
                         output=p.stderr)


def write(ctx):
    """Check, then write what changed atomically, remove what is no longer wanted,
    enable the boot-time units and reload systemd (when it runs)."""
    files = render(ctx)
    check(ctx, files)
    unit_dir = Path(ctx.cfg["systemd.unit_dir"])
    stale = _stale(ctx, files)
    systemctl = shutil.which("systemctl") if unit_dir == SYSTEM_UNIT_DIR else None
    for path in stale:
        rel = str(path.relative_to(unit_dir))
        if systemctl and rel in render_systemd.ENABLED:
            subprocess.run([systemctl, "disable", "-q", path.name], capture_output=True)
        path.unlink()
        ctx.progress(f"removed {path}")
    for path, text in files.items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
        ctx.progress(f"wrote {path}")
    enable = [Path(rel).name for rel in render_systemd.ENABLED if unit_dir / rel in files]
    if systemctl:
        p = subprocess.run([systemctl, "enable", "-q", *enable], capture_output=True, text=True)
        if p.returncode != 0:
            raise StepFailed(f"systemctl enable failed: {p.stderr.strip()}", output=p.stderr)
        ctx.progress(f"enabled at boot: {' '.join(enable)}")
    else:
        ctx.progress(f"{unit_dir} is not {SYSTEM_UNIT_DIR}: not enabled "
                     f"(systemctl enable {' '.join(enable)})")
    if Path("/run/systemd/system").is_dir():        # sd_booted(): systemd is PID 1
        subprocess.run(["systemctl", "daemon-reload"], check=True, capture_output=True)
        ctx.progress("systemd reloaded (daemon-reload)")
    else:
        ctx.progress("systemd is not running here: no daemon-reload; "
                     "the units take effect when it starts")
