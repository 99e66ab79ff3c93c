"""A command's start-up: every `linohost` command is a new Python process, and most
never talk to a database server, render a template or draw a progress bar; they do
not import what those need (linohost/imports.py)."""

import os
import subprocess
import sys

import pytest

#: Imported when first used: the database drivers (psycopg imports asyncio), Jinja2,
#: rich's progress bar.
LAZY = {"psycopg", "pymysql", "asyncio", "jinja2", "rich.progress"}


@pytest.mark.parametrize("args", [["status", "--json"], ["list"], ["list", "--json"]])
def test_a_command_that_needs_none_of_them_imports_none(bare, args):
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "linohost", *args],
                       env={**os.environ, "LINOHOST_ROOT": str(bare.root)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    assert "linohost.cli" in imported and not imported & LAZY, imported & LAZY


def test_the_drivers_load_when_first_used():
    code = ("import sys; from linohost.backends.db import postgresql, mysql; "
            "assert 'psycopg' not in sys.modules or type(sys.modules['psycopg']).__name__ "
            "== '_LazyModule'; postgresql.psycopg.sql.Identifier('x'); "
            "print(type(sys.modules['psycopg']).__name__, mysql.pymysql.err.OperationalError)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "module" and "OperationalError" in p.stdout
