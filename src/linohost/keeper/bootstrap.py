"""The program of every process the keeper starts in a site's environment (its text is
given to ``python -c``, followed by a module's name and its arguments).

linohost is not installed there: the modules it ships (keeper/shipped.py) come as
source in ``LINOHOST_SOURCE_<name>`` variables, which this takes out of the
environment (the site's own children never see them) and makes importable as
``linohost_<name>``. Then it runs ``linohost_<argv[1]>.main()`` with ``sys.argv`` as
if that module had been started: ``["-c", ARGS...]``.
"""
import importlib.abc
import importlib.util
import os
import sys


class Shipped(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and loads linohost's shipped modules from their sources."""

    PREFIX = "LINOHOST_SOURCE_"

    def __init__(self):
        self.sources = {"linohost_" + k[len(self.PREFIX):]: os.environ.pop(k)
                        for k in list(os.environ) if k.startswith(self.PREFIX)}

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        return importlib.util.spec_from_loader(
            name, self, origin=f"linohost/keeper/{name[len('linohost_'):]}.py")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(self.sources[module.__name__], module.__spec__.origin, "exec")
        exec(code, module.__dict__)


sys.meta_path.insert(0, Shipped())
importlib.import_module("linohost_" + sys.argv.pop(1)).main()
