"""Output for people (stderr, colour and progress on a terminal) and scripts (--json)."""

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:          # a pipe or a file: whole lines, never cut at 80 columns
    out.width = 100_000


def progress(message):
    err.print(f"[dim]linohost:[/dim] {escape(message)}", markup=True)


def error(message):
    sys.stderr.write(f"linohost: error: {message}\n")


def print_json(data):
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def table(columns, rows):
    from rich.table import Table
    t = Table(*columns, box=None, pad_edge=False, header_style="bold")
    for r in rows:
        t.add_row(*[str(c) for c in r])
    if out.is_terminal:
        out.print(t)
    else:
        with out.capture() as captured:
            out.print(t)
        sys.stdout.write("".join(line.rstrip() + "\n"
                                 for line in captured.get().splitlines()))


@contextmanager
def bar(description, total):
    """A progress bar on stderr; yields ``advance(text)``."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err) as p:
        task = p.add_task(description, total=total)
        yield lambda text="": p.update(task, advance=1, description=f"{description} {text}")


def report(as_json, data, columns, rows, failure=None):
    """A per-site result as JSON (*data*) or a table; then, if *failure* is a
    message, that one line on stderr and exit code 1."""
    if as_json:
        print_json(data)
    else:
        table(columns, rows)
    if failure:
        error(failure)
        sys.exit(1)
