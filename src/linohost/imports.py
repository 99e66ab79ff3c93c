"""Modules imported when first used.

Every `linohost` command is a new Python process, and most (list, status, logs, show)
never talk to a database server: the drivers (psycopg, which imports asyncio, and
PyMySQL) took a fifth of a command's start-up.
"""

import importlib.util
import sys


def lazy(name):
    """Module *name*, executed at its first attribute access (the recipe in the
    documentation of :class:`importlib.util.LazyLoader`). Not for a module that
    threads may first use at once: Python 3.11's LazyLoader is not thread-safe (the
    database backends run in the command's main thread only)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
