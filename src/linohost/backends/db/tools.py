"""Running the database servers' own client tools (pg_dump, mysqldump, ...)."""

import os
import shutil
import subprocess

from ...errors import StepFailed, UsageError


def run_tool(argv, *, env=None, stdin=None, what=None):
    """Run a client tool (argv list, no shell); raise StepFailed with its last line."""
    exe = shutil.which(argv[0])
    if not exe:
        raise UsageError(f"{argv[0]} is not installed (Debian: postgresql-client or "
                         f"mariadb-client)")
    p = subprocess.run([exe, *map(str, argv[1:])], env={**os.environ, **(env or {})},
                       stdin=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        raise StepFailed(f"{what or argv[0]} failed: {lines[-1] if lines else p.returncode}",
                         output=p.stderr)
    return p
