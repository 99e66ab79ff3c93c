"""A fence around each site's worker: its memory, its share of the CPU and its number
of tasks (``[limits]``, per site in its record), so that one site cannot take the
machine from the others.

Enforced with the cgroup v1 controllers ``memory``, ``cpu`` and ``pids`` where the
keeper can write them (one group per site under the keeper's own group:
``.../linohost-HOSTID/SITE``): a worker over its memory is killed by the kernel, and
the keeper answers that site's next requests with its 503 page for a few seconds
before it starts a new worker. Where no controller is writable (a cgroup v2 host: not
yet), each worker gets rlimits instead: ``RLIMIT_DATA`` (an allocation beyond it fails
inside the worker: that request gets a 500), ``RLIMIT_NPROC`` of the site's own user,
and a nice level for a CPU weight under 100. ``status`` says which.
"""

import hashlib
import logging
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("linohost.keeper")

CONTROLLERS = ("memory", "cpu", "pids")
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    memory_mib: int         # 0: none
    cpu_weight: int         # 100: as everybody (1..10000, systemd's CPUWeight)
    tasks: int              # 0: none

    @classmethod
    def of(cls, cfg, site):
        """The host's [limits], with the site record's own where it sets one."""
        return cls(site.memory_limit or cfg["limits.memory"],
                   site.cpu_weight or cfg["limits.cpu_weight"],
                   site.tasks_limit or cfg["limits.tasks"])


def _v1_mounts():
    """{controller: its cgroup v1 mount point} from /proc/self/mountinfo."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = (right.split() + ["", "", ""])[:3]
            if fstype != "cgroup":
                continue
            for c in options.split(","):
                if c in CONTROLLERS:
                    out[c] = left.split()[4]
    return out


def _own_groups():
    """{controller: the keeper's own group path} from /proc/self/cgroup (v1 lines)."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(","):
                out[c] = path
    return out


class Fence:
    """Where and how the keeper fences its workers."""

    def __init__(self, host_root):
        self.tag = "linohost-" + hashlib.sha256(str(host_root).encode()).hexdigest()[:10]
        self.bases = {}                 # controller -> our directory
        try:
            mounts, own = _v1_mounts(), _own_groups()
        except OSError:
            mounts, own = {}, {}
        for c, mount in mounts.items():
            base = Path(mount) / own.get(c, "/").lstrip("/") / self.tag
            try:
                base.mkdir(exist_ok=True)
            except OSError:
                continue
            self.bases[c] = base
            for stale in base.iterdir():        # of sites of a keeper that was killed
                if stale.is_dir():
                    try:
                        stale.rmdir()           # (refused while a process is in it)
                    except OSError:
                        pass
        self.kind = ("cgroup v1 (" + ", ".join(sorted(self.bases)) + ")" if self.bases
                     else "rlimits (no writable cgroup controller)")
        self.oom_seen = {}

    # -- a worker ---------------------------------------------------------------------
    def place(self, name, pid, limits, own_user=True):
        """Put the new worker *pid* of site *name* behind *limits* (*own_user*: it runs
        as the site's own user, whose process count RLIMIT_NPROC may bound)."""
        rlimit_memory = "memory" not in self.bases
        for c, base in self.bases.items():
            group = base / name
            group.mkdir(exist_ok=True)
            if c == "memory":
                self._memory(group, limits.memory_mib)
            elif c == "cpu":
                _write(group / "cpu.shares", max(2, limits.cpu_weight * 1024 // 100))
            elif c == "pids":
                _write(group / "pids.max", limits.tasks or "max")
            _write(group / "cgroup.procs", pid)
        if rlimit_memory and limits.memory_mib:
            size = limits.memory_mib * MIB
            resource.prlimit(pid, resource.RLIMIT_DATA, (size, size))
        if "pids" not in self.bases and limits.tasks and own_user:
            resource.prlimit(pid, resource.RLIMIT_NPROC, (limits.tasks, limits.tasks))
        if "cpu" not in self.bases and limits.cpu_weight < 100:
            os.setpriority(os.PRIO_PROCESS, pid,
                           min(19, round(-10 * math.log2(limits.cpu_weight / 100))))

    def _memory(self, group, mib):
        limit = mib * MIB if mib else -1
        for knob in ("memory.move_charge_at_immigrate",):
            _write(group / knob, 3, quiet=True)     # what it held before it moved in
        # memsw (memory + swap) must stay >= the memory limit: lower it last, raise it first
        memsw = group / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            _write(memsw, -1, quiet=True)
        _write(group / "memory.limit_in_bytes", limit)
        if memsw.exists():
            _write(memsw, limit, quiet=True)
        _write(group / "memory.max_usage_in_bytes", 0, quiet=True)    # peak of this worker

    # -- what it did ------------------------------------------------------------------
    def killed_for_memory(self, name):
        """Whether the kernel killed a process of *name* for its memory limit since the
        last time this was asked."""
        base = self.bases.get("memory")
        if base is None:
            return False
        try:
            text = (base / name / "memory.oom_control").read_text()
        except OSError:
            return False
        kills = next((int(line.split()[1]) for line in text.splitlines()
                      if line.startswith("oom_kill ")), 0)
        before = self.oom_seen.get(name, 0)
        self.oom_seen[name] = kills
        return kills > before

    def peak_kib(self, name, pid):
        """The most memory the site's worker has held (its group's, or its own VmHWM)."""
        base = self.bases.get("memory")
        try:
            if base is not None:
                return int((base / name / "memory.max_usage_in_bytes").read_text()) // 1024
            if pid:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    # -- groups -----------------------------------------------------------------------
    def release(self, name):
        """The site is gone: its (empty) groups too."""
        for base in self.bases.values():
            try:
                (base / name).rmdir()
            except OSError:
                pass
        self.oom_seen.pop(name, None)

    def close(self, names):
        for n in names:
            self.release(n)
        for base in self.bases.values():
            try:
                base.rmdir()
            except OSError:
                pass


def _write(path, value, quiet=False):
    try:
        path.write_text(f"{value}\n")
    except OSError as e:
        if not quiet:
            raise OSError(f"{path}: {e.strerror or e}") from None
