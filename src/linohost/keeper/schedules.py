"""What workers told the keeper of their sites' background tasks, kept across keeper
restarts (`run/keeper-schedules.json`, root's only): a restarted keeper wakes only the
sites whose task is due or whose schedule it has never seen, not every site once.

A site's entry is its next task's time (epoch seconds, or None: no task that may wake
it). `linohost manage SITE` forgets the site's entry (a command may have requested a
task or changed the schedule), so the keeper wakes the site once to learn it anew.
"""

import json
import logging

from ..fs import atomic_write
from . import paths

log = logging.getLogger("linohost.keeper")


def load(host, names):
    """{site: next task time or None} of the sites *names* still has."""
    try:
        data = json.loads(paths.schedules_file(host).read_text())
        return {n: (None if t is None else float(t)) for n, t in data.items() if n in names}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        log.warning("not reading %s: %s", paths.schedules_file(host), e)
        return {}


def save(host, schedules):
    try:
        atomic_write(paths.schedules_file(host), json.dumps(schedules, sort_keys=True),
                     mode=0o600)
    except OSError as e:
        log.warning("not keeping the sites' task schedules: %s", e)
