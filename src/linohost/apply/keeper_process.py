"""The keeper as a child of `linohost serve`: started before Apache, restarted if
it dies, stopped after Apache (its workers finish their requests first)."""

import signal
import subprocess
import sys
import time

from .. import processes
from ..errors import StepFailed
from ..keeper import control
from .system import die_with_parent


class KeeperProcess:
    def __init__(self, host, progress):
        self.host, self.progress = host, progress
        self.proc = None
        self.log = host.logs_dir / "keeper.log"

    def start(self, timeout=60):
        """Start `linohost keeper` and wait until it answers (every socket is bound)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "linohost", "--root", str(self.host.root), "keeper"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + timeout
        while not control.running(self.host):
            if self.proc.poll() is not None:
                raise StepFailed(f"the keeper exited with code {self.proc.returncode}: "
                                 f"{_tail(self.log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise StepFailed(f"the keeper did not answer in {timeout} s: see {self.log}")
            time.sleep(0.05)
        return self.proc.pid

    def check(self):
        """Restart the keeper if it died; return whether it had to."""
        if self.proc is None or self.proc.poll() is None:
            return False
        self.progress(f"the keeper (pid {self.proc.pid}) exited with code "
                      f"{self.proc.returncode}: restarting it")
        self.start()
        return True

    def stop(self, timeout=60):
        if self.proc is not None:
            processes.end(self.proc, timeout)


def _tail(path, lines=3):
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"see {path}"
