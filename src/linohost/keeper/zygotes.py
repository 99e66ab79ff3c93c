"""The keeper's zygotes: one per site group, each a Lino process that forks workers.

A *site group* is the set of sites whose Lino structure is the same by what
linohost knows of them (:func:`group_of`): environment, settings module of the
app, languages, front end, URL layout (prefix or own host) and database engine.
What a site's own settings.py changes beyond that is found by the worker itself
(:mod:`.zygote`): it then exits "inexact" and the keeper starts the site plainly.

Each zygote sets up a *template* site of its group, rendered by linohost's own
templates into ``ROOT/run/zygotes/NAME/`` with throwaway secrets: no site's
secret is ever in a zygote. Its database is the environment's demo data of the
group; Lino's start-up reads a few tables of it (journals, excerpt types, content
types: they make actions), and a site whose own rows there differ cannot be forked
from it. Such sites tell the keeper what they hold there (a digest, and the rows
of those tables); where enough sites hold the same, the keeper starts a *variant*
zygote of the group whose database holds those rows and nothing else (no other
table has a row): what it holds of a site is what each site it serves holds alike.
"""

import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from .. import processes
from ..render import site as render_site
from . import paths, shipped
from . import states as st

log = logging.getLogger("linohost.keeper")

#: In a variant zygote's template: the rows it starts with (see zygote.py).
VARIANT_FILE = "variant.json"
#: Seconds the keeper waits for a zygote's answer to a fork.
FORK_TIMEOUT = 10


class ZygoteError(Exception):
    pass


#: A project's own plugin settings, which Lino reads before it makes its models.
OWN_INI = "lino.ini"


def group_of(host, site):
    """The key of *site*'s group (sites that one zygote can serve); a site with a
    lino.ini of its own, or installed plugins of its own, is in a group of those with
    the same (by their digest)."""
    key = (site.env, site.settings_module, tuple(site.languages), site.front_end,
           host.site_prefix(site) != "/", site.db)
    try:
        ini = (host.site_dir(site.name) / OWN_INI).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        ini = None
    if ini is None and not site.plugins:
        return key
    own = repr((ini, tuple(site.plugins))).encode()
    return (*key, hashlib.sha256(own).hexdigest()[:16])


def group_name(key):
    return "zyg_" + hashlib.sha256(repr(key).encode()).hexdigest()[:10]


class Zygote:
    """One zygote process and its template project (of a *variant*: (digest, tables)
    as a worker reported them, see zygote.py's ``_same_reads``)."""

    def __init__(self, host, key, sample, tag="", variant=None):
        self.host, self.key = host, key
        self.variant = variant
        self.name = group_name(key) + (f"_{variant[0][:6]}" if variant else "") + tag
        self.sample = sample                 # a site of the group (for its record)
        self.sites = 0                       # how many sites it is kept for
        self.proc = None
        self.sock = None
        self.state = st.Z_STOPPED            # see states.ZYGOTE_ALLOWED
        self.reason = None
        self.fingerprint = self._fingerprint()
        self.started = None
        self.ready_s = None
        self.retry_at = 0.0
        self.failures = 0
        self.on_close = None                 # called with the socket before it closes

    @property
    def project(self):
        return paths.zygotes_dir(self.host) / self.name / self.name

    def _fingerprint(self):
        """What the template depends on besides its group: the environment and the
        host's shared files."""
        h = self.host
        files = [h.envs_dir / self.key[0] / "linohost-env.toml", h.local_dir / "djangosite_local.py",
                 h.local_dir / render_site.PREFIX_PLUGIN / "__init__.py"]
        out = []
        for p in files:
            try:
                s = p.stat()
                out.append((s.st_mtime_ns, s.st_size))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def row(self):
        """What `linohost status --zygotes` shows."""
        env, app, languages, front_end, prefix, db, *own_ini = self.key
        return {"name": self.name, "state": self.state, "reason": self.reason,
                "pid": self.proc.pid if self.proc and self.state in (st.Z_STARTING, st.Z_READY)
                else None, "ready_s": self.ready_s, "env": env, "app": app,
                "languages": " ".join(languages), "front_end": front_end,
                "urls": "prefix" if prefix else "domain", "db": db,
                "variant": self.variant[0] if self.variant else None,
                "own_ini": own_ini[0] if own_ini else None, "sites": self.sites}

    def stale(self):
        return self._fingerprint() != self.fingerprint

    # -- the template ----------------------------------------------------------------
    def _write_template(self):
        """The template project. Its database is SQLite: a copy of the environment's
        demo data of its app, front end and languages (`new`'s demo template) when
        there is one, else empty. Lino's start-up reads a few tables (excerpt types,
        journals, invoicing tasks: they make actions); a worker compares what they hold
        in its own database with what the template read (see zygote.py)."""
        h = self.host
        prefix_mode = self.key[4]
        site = replace(self.sample, name=self.name, title=f"template of {self.name}",
                       domain="" if prefix_mode else f"{self.name}.invalid", db_name=self.name,
                       db="sqlite", admin="")          # (a site's own first admin: copied)
        env = h.env(site.env)
        top = self.project.parent
        shutil.rmtree(top, ignore_errors=True)
        for sub in ("", "config", "media", "apache"):
            (self.project / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(top.parent, 0o700)
        files = render_site.project_files(
            site, site_prefix=f"/{self.name}/" if prefix_mode else "/",
            static_root=env.static_root, allowed_hosts=[f"{self.name}.invalid"])
        demo = Path(env.path) / "demo"
        kind = f"{site.app.replace('.', '_')}-{site.front_end}-{'_'.join(site.languages)}-sqlite-"
        data = sorted(demo.glob(f"{kind}*/ready")) if demo.is_dir() else []
        if data:
            shutil.copy2(data[-1].parent / "db", self.project / "default.db")
        if self.variant:                     # the zygote fills its database itself
            (self.project / VARIANT_FILE).write_text(json.dumps(self.variant[1]))
        ini = h.site_dir(self.sample.name) / OWN_INI
        if len(self.key) > 6 and ini.is_file():     # the group's own lino.ini (its sample's)
            shutil.copyfile(ini, self.project / OWN_INI)
        for rel, text in files.items():
            (self.project / rel).write_text(text)
        for secret in (f"key-{self.name}", f"db-{self.name}"):
            path = h.secrets_dir / secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))

    def remove_files(self):
        shutil.rmtree(self.project.parent, ignore_errors=True)
        for secret in (f"key-{self.name}", f"db-{self.name}"):
            (self.host.secrets_dir / secret).unlink(missing_ok=True)

    # -- the process -----------------------------------------------------------------
    def start(self):
        self.fingerprint = self._fingerprint()
        self._to(st.Z_STARTING)
        self.started = time.monotonic()
        try:
            self._write_template()
            env = self.host.env(self.key[0])
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            logfile = open(self.host.logs_dir / "zygotes.log", "ab")
            try:
                self.proc = subprocess.Popen(
                    shipped.argv(env.bin_python, "zygote", self.project),
                    cwd=self.project, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                    pass_fds=(theirs.fileno(),),
                    env={**os.environ, **shipped.environ(),
                         "LINOHOST_ZYGOTE_FD": str(theirs.fileno()),
                         "LINOHOST_ZYGOTE_ENGINE": render_site.ENGINES[self.key[5]],
                         "XDG_CACHE_HOME": str(self.host.root / "home" / ".cache")})
            finally:
                theirs.close()
                logfile.close()
        except Exception as e:              # noqa: BLE001
            self._failed(f"cannot start: {e}")
            return
        ours.setblocking(False)
        self.sock = ours
        log.info("zygote %s: starting (pid %d) for %s%s", self.name, self.proc.pid,
                 ", ".join(map(str, self.key)),
                 f" with the data of variant {self.variant[0]}" if self.variant else "")

    def readable(self):
        """The zygote's first word: ready or failed."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        reply = json.loads(data) if data else {"failed": "exited"}
        if "ready" in reply and self.state == st.Z_STARTING:
            self._to(st.Z_READY)
            self.failures = 0
            self.ready_s = reply["ready"]
            log.info("zygote %s: ready in %.2f s", self.name, self.ready_s)
        else:
            self._failed(f"template failed ({reply.get('failed')}; see logs/zygotes.log)")

    def _to(self, state, reason=None):
        st.check(self.state, state, st.ZYGOTE_ALLOWED)
        self.state, self.reason = state, reason

    def _failed(self, reason):
        self.failures += 1
        self._to(st.Z_FAILED, reason)
        self.retry_at = time.monotonic() + st.backoff(self.failures, cap=300, first=10)
        log.error("zygote %s: %s", self.name, reason)
        self.close()

    def fork(self, request, fds):
        """Ask for a worker; return its pid (a child of the keeper once re-parented)."""
        if self.state != st.Z_READY:
            raise ZygoteError(f"zygote {self.state}")
        self.sock.setblocking(True)
        self.sock.settimeout(FORK_TIMEOUT)
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
            data = self.sock.recv(65536)
        except OSError as e:
            self._failed(f"no answer to a fork: {e}")
            raise ZygoteError(self.reason) from None
        finally:
            self.sock.setblocking(False)
        if not data:
            self._failed("exited")
            raise ZygoteError(self.reason)
        reply = json.loads(data)
        if "pid" not in reply:
            raise ZygoteError(reply.get("error", "no pid"))
        return reply["pid"]

    def poll(self):
        """Notice a zygote that died (its workers live on)."""
        if self.proc and self.proc.poll() is not None and self.state in (st.Z_STARTING,
                                                                          st.Z_READY):
            self._failed(f"exited with code {self.proc.returncode}")

    def stop(self):
        self.close()
        if self.state != st.Z_STOPPED:
            self._to(st.Z_STOPPED)

    def close(self):
        """Close the connection to the process and end it (its workers live on)."""
        if self.sock is not None:
            if self.on_close:
                self.on_close(self.sock)
            self.sock.close()
            self.sock = None
        if self.proc:
            processes.end(self.proc, 5)


class ForkedWorker:
    """A worker forked by a zygote and re-parented to the keeper (a subreaper):
    what the keeper uses of subprocess.Popen."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Not (yet) our child: still the zygote's in the instant after its fork.
                if not _alive(self.pid):
                    self.returncode = -9
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self):
        import signal
        self.send_signal(signal.SIGTERM)

    def kill(self):
        import signal
        self.send_signal(signal.SIGKILL)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def set_child_subreaper():
    """Orphaned descendants (the zygotes' workers) become the keeper's children."""
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
