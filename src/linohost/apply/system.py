"""The one seam to the operating system: subprocesses and the site user.

As root, site commands run as the unprivileged site user and site files
belong to it; as any other user, everything runs as that user.
"""

import ctypes
import grp
import os
import pwd
import signal
import subprocess

from ..errors import StepFailed, UsageError


def _die_with_parent():
    """In the child: be killed when linohost dies, so that nothing of an
    interrupted command goes on behind the repair of the next one."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class System:
    def __init__(self, cfg, home=None):
        self.home = home                # HOME of site commands run as the site user
        self.is_root = os.geteuid() == 0
        self.site_owner = None          # (uid, gid) when sites run as another user
        if self.is_root:
            try:
                uid = pwd.getpwnam(cfg["site_user"]).pw_uid
                gid = grp.getgrnam(cfg["site_group"]).gr_gid
            except KeyError as e:
                raise UsageError(f"site user or group does not exist: {e.args[0]}") from None
            if uid == 0:
                raise UsageError("site_user must not be root: sites never run as root")
            self.site_owner = (uid, gid)

    def run(self, argv, *, as_site=False, env=None, cwd=None, capture=True, what=None,
            timeout=None):
        """Run *argv* (a list, never a shell); raise StepFailed with its output tail."""
        kw = {}
        if as_site and self.site_owner:
            kw.update(user=self.site_owner[0], group=self.site_owner[1], extra_groups=[])
        full_env = {**os.environ, **(env or {})}
        if as_site and self.site_owner:
            full_env["HOME"] = str(self.home)
        try:
            p = subprocess.run(
                [str(a) for a in argv], cwd=cwd, env=full_env, text=True, timeout=timeout,
                preexec_fn=_die_with_parent,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None, **kw)
        except FileNotFoundError as e:
            raise StepFailed(f"{what or argv[0]}: {e.strerror}: {e.filename}") from None
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{what or argv[0]}: timed out after {timeout} s") from None
        if p.returncode != 0:
            out = (p.stdout or "").strip()
            last = out.splitlines()[-1] if out else f"exit code {p.returncode}"
            raise StepFailed(f"{what or argv[0]} failed: {last}", output=out)
        return p

    def _as_site(self, env=None):
        """subprocess keywords that run a command as the site user."""
        kw = {"env": {**os.environ, **(env or {})}}
        if self.site_owner:
            kw.update(user=self.site_owner[0], group=self.site_owner[1], extra_groups=[])
            kw["env"]["HOME"] = str(self.home)
        return kw

    def exec_site(self, argv, env=None, cwd=None):
        """Run *argv* as the site user with the terminal attached; return its exit code."""
        return subprocess.call([str(a) for a in argv], cwd=cwd, **self._as_site(env))

    def run_site_logged(self, argv, log_path, cwd=None, timeout=None):
        """Run *argv* as the site user, its output into *log_path*; return the exit code."""
        with open(log_path, "w", encoding="utf-8") as log:
            p = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdin=subprocess.DEVNULL,
                                 preexec_fn=_die_with_parent,
                                 stdout=log, stderr=subprocess.STDOUT, **self._as_site())
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                log.write(f"\nlinohost: killed after {timeout} s\n")
                return -9
