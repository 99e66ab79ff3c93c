"""What every apply step needs: the host, the OS seam, a progress callback."""

from dataclasses import dataclass
from typing import Callable

from ..model.host import Host
from .system import System


@dataclass
class Context:
    host: Host
    system: System
    progress: Callable[[str], None] = lambda msg: None

    @property
    def cfg(self):
        return self.host.cfg
