"""On-disk journals: a multi-step operation completes or is undone.

An operation records each resource *before* it creates it (or, for a removal,
every resource it will destroy before it starts). The journal file is removed
when the operation completes. A journal left behind (the process was killed)
is repaired by the next linohost command that takes the host lock: a creation
is rolled back, a removal is finished.
"""

import json
import os
import time
from pathlib import Path

from ..fs import atomic_write, remove_tree
from . import pagecache

#: kind -> function(ctx, **args) that destroys one resource, idempotently. Each
#: operation module registers its own kinds; whoever undoes a journal another
#: command left imports them all (the CLI's repair), so the journal knows none.
UNDO = {}


def undo_step(kind):
    def register(fn):
        UNDO[kind] = fn
        return fn
    return register


@undo_step("tree")
def _undo_tree(ctx, path):
    remove_tree(path)
    pagecache.prune(ctx.host)           # what only that tree linked


@undo_step("file")
def _undo_file(ctx, path):
    Path(path).unlink(missing_ok=True)


class Journal:
    def __init__(self, host, op, subject):
        self.dir = host.run_dir / "journal"
        self.path = self.dir / f"{op}-{subject}.json"
        self.op = op
        self.steps = []
        self.started = 0

    def start(self, steps=()):
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.steps = list(steps)
        self.started = time.time_ns()
        self._save()
        return self

    def record(self, kind, **args):
        """Note that the resource (*kind*, *args*) is about to be created."""
        self.steps.append({"kind": kind, **args})
        self._save()

    def _save(self):
        atomic_write(self.path, json.dumps({"op": self.op, "started": self.started, "steps": self.steps},
                                          indent=1),
                     mode=0o600)

    def commit(self):
        self.path.unlink(missing_ok=True)

    def undo(self, ctx, log=None):
        """Destroy what was recorded: reversed for a creation, in order for a removal."""
        steps = self.steps if self.op == "rm" else list(reversed(self.steps))
        errors = []
        for step in steps:
            args = {k: v for k, v in step.items() if k != "kind"}
            try:
                UNDO[step["kind"]](ctx, **args)
            except Exception as e:  # keep going: undo as much as possible
                errors.append(f"{step['kind']} {args}: {e}")
                if log:
                    log(f"could not undo {step['kind']} {args}: {e}")
        if not errors:
            self.commit()
        return errors

    @staticmethod
    def left(host):
        """Whether interrupted operations left anything (a journal, or a journal
        write cut short); reads only, so it needs no lock."""
        d = host.run_dir / "journal"
        return d.is_dir() and any(p for pattern in ("*.json", ".*.tmp") for p in d.glob(pattern))

    @classmethod
    def pending(cls, host):
        """Journals left by interrupted operations, the latest started first (an
        operation nested in another is repaired before the outer one). Only under
        the host lock: it removes journal writes cut short (another command's
        write in progress would look the same)."""
        d = host.run_dir / "journal"
        out = []
        for tmp in d.glob(".*.tmp") if d.is_dir() else ():
            tmp.unlink(missing_ok=True)
        for p in sorted(d.glob("*.json")) if d.is_dir() else ():
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError):
                os.unlink(p)
                continue
            j = cls.__new__(cls)
            j.dir, j.path, j.op, j.steps = d, Path(p), data["op"], data["steps"]
            j.started = data.get("started", 0)
            out.append(j)
        return sorted(out, key=lambda j: -j.started)
