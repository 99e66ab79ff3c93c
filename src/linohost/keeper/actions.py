"""What the status page's buttons do for one site: wake it, let it sleep (through
the keeper's control socket, so that its loop acts, as for any command), back it up
(``linohost backup SITE``, in the background: it takes a while) and show its last
log lines (those of ``linohost logs SITE``)."""

import subprocess
import sys

from .. import sitelogs
from ..errors import LinohostError
from . import control

#: Log lines the page shows.
LOG_LINES = 200


class ActionError(Exception):
    """An action that cannot be done (its one-line reason)."""


class Actions:
    """The actions of the keeper of *host*; *call* talks to its control socket."""

    def __init__(self, host, call=control.call):
        self.host = host
        self.call = call
        self.backups = {}               # site -> Popen of its running backup

    def _site(self, name):
        try:
            return self.host.site(name)
        except LinohostError as e:
            raise ActionError(str(e)) from None

    def _ask(self, cmd, name):
        reply = self.call(self.host, cmd, site=self._site(name).name)
        if not reply.get("ok"):
            raise ActionError(reply.get("error", f"{cmd} failed"))
        return reply

    def wake(self, name):
        return self._ask("wake", name)

    def sleep(self, name):
        return self._ask("sleep", name)

    def backup(self, name):
        """Start ``linohost backup SITE`` (its output goes to logs/actions.log); one
        at a time per site."""
        site = self._site(name)
        running = self.backups.get(site.name)
        if running is not None and running.returncode is None:
            raise ActionError(f"a backup of {site.name} is running")
        with open(self.host.logs_dir / "actions.log", "ab") as out:
            self.backups[site.name] = subprocess.Popen(
                [sys.executable, "-m", "linohost", "--root", str(self.host.root),
                 "backup", site.name],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return {"ok": True}

    def processes(self):
        """The backups started (for the keeper's reaper, which collects them)."""
        return [p for p in list(self.backups.values()) if p.returncode is None]

    def busy(self):
        """The sites whose backup runs."""
        return {name for name, p in list(self.backups.items()) if p.returncode is None}

    def log(self, name):
        """The site's last log lines (worker log and requests, in time order)."""
        return "\n".join(e.text for e in sitelogs.recent(self.host, self._site(name),
                                                         LOG_LINES)) + "\n"
