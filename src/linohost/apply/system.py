"""The one seam to the operating system: subprocesses and the sites' users.

As root, each site has its own unprivileged Unix user (:meth:`System.owner_of`):
its commands run as it and its files belong to it; as any other user,
everything runs as that user.
"""

import ctypes
import grp
import os
import pwd
import signal
import subprocess

from ..errors import StepFailed, UsageError
from ..model import names


def die_with_parent(sig=signal.SIGKILL):
    """In the child: get *sig* when linohost dies, so that nothing of an
    interrupted command goes on behind the repair of the next one (and no
    worker outlives its keeper)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def step_failed(what, output, code):
    """The StepFailed of a command *what* that exited with *code* after *output*."""
    out = (output or "").strip()
    last = out.splitlines()[-1] if out else f"exit code {code}"
    return StepFailed(f"{what} failed: {last}", output=out)


class System:
    def __init__(self, cfg, home=None):
        self.cfg = cfg
        self.home = home                # the host's home/: as root, home/SITE is SITE's HOME
        self.is_root = os.geteuid() == 0
        self.web_owner = None           # as root: (uid, gid) of the web server (Apache's User)
        if self.is_root:
            try:
                uid = pwd.getpwnam(cfg["site_user"]).pw_uid
                gid = grp.getgrnam(cfg["site_group"]).gr_gid
            except KeyError as e:
                raise UsageError(f"site user or group does not exist: {e.args[0]}") from None
            if uid == 0:
                raise UsageError("site_user (the web server's user) must not be root")
            self.web_owner = (uid, gid)

    def user_of(self, site_name):
        """The name of the Unix user *site_name* runs as (as root)."""
        return names.site_user(self.cfg["site_user_prefix"], site_name)

    def owner_of(self, site_name):
        """(uid, gid) that site *site_name*'s files belong to and its processes run as;
        None when linohost does not run as root (then everything is the caller's)."""
        if not self.is_root:
            return None
        user = self.user_of(site_name)
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"site {site_name} has no Unix user {user}: run `linohost init` "
                             f"to give every site its own") from None
        if pw.pw_uid == 0:
            raise UsageError(f"{user} is root: sites never run as root")
        return pw.pw_uid, pw.pw_gid

    def home_of(self, site_name):
        """HOME of site *site_name*'s processes as root (caches of pip, fontconfig...)."""
        return self.home / site_name

    def run(self, argv, *, as_site=None, env=None, cwd=None, capture=True, what=None,
            timeout=None):
        """Run *argv* (a list, never a shell), as site *as_site*'s user if given;
        raise StepFailed with its output tail."""
        try:
            p = subprocess.run(
                [str(a) for a in argv], cwd=cwd, text=True, timeout=timeout,
                preexec_fn=die_with_parent,
                stdout=subprocess.PIPE if capture else None,
                stderr=subprocess.STDOUT if capture else None, **self._as_site(as_site, env))
        except FileNotFoundError as e:
            raise StepFailed(f"{what or argv[0]}: {e.strerror}: {e.filename}") from None
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{what or argv[0]}: timed out after {timeout} s") from None
        if p.returncode != 0:
            raise step_failed(what or argv[0], p.stdout, p.returncode)
        return p

    def site_process_kwargs(self, site_name, env=None):
        """subprocess keywords that run a process of *site_name* as its user."""
        return self._as_site(site_name, env)

    def _as_site(self, site_name, env=None):
        """subprocess keywords that run a command as site *site_name*'s user (as root):
        its uid and gid and no other group, its own HOME, and umask 027 (what it makes
        is not for others; media/ gives its files to the web server's group)."""
        kw = {"env": {**os.environ, **(env or {})}}
        owner = self.owner_of(site_name) if site_name else None
        if owner:
            kw.update(user=owner[0], group=owner[1], extra_groups=[], umask=0o027)
            kw["env"].update(self.site_environ(site_name))
        return kw

    def site_environ(self, site_name):
        """The environment variables that name *site_name*'s user to its processes."""
        if not self.is_root:
            return {}
        user = self.user_of(site_name)
        return {"HOME": str(self.home_of(site_name)), "USER": user, "LOGNAME": user}

    def exec_site(self, argv, site_name, env=None, cwd=None):
        """Run *argv* as *site_name*'s user with the terminal attached; return its exit code."""
        return subprocess.call([str(a) for a in argv], cwd=cwd, **self._as_site(site_name, env))

    def run_site_logged(self, argv, site_name, log_path, cwd=None, timeout=None):
        """Run *argv* as *site_name*'s user, its output into *log_path*; return the exit code."""
        with open(log_path, "w", encoding="utf-8") as log:
            p = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdin=subprocess.DEVNULL,
                                 preexec_fn=die_with_parent,
                                 stdout=log, stderr=subprocess.STDOUT,
                                 **self._as_site(site_name))
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                log.write(f"\nlinohost: killed after {timeout} s\n")
                return -9
