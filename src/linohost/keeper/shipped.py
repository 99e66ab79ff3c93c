"""The keeper's code that runs in a site's environment, where linohost is not installed:
the worker, the zygote and what they use, shipped as source.

A process the keeper starts there runs ``python -c BOOTSTRAP MODULE ARGS...`` (see
:mod:`.bootstrap`) with the sources of :data:`NAMES` in its environment; they import
each other as ``linohost_<name>`` and nothing of linohost.
"""
from importlib import resources

#: The modules shipped, by their file names in this package.
NAMES = ("protocol", "worker", "jobs", "zygote", "retarget", "unheard")

_here = resources.files("linohost.keeper")
BOOTSTRAP = _here.joinpath("bootstrap.py").read_text()
SOURCES = {name: _here.joinpath(f"{name}.py").read_text() for name in NAMES}


def argv(python, main, *args):
    """The command line that runs ``linohost_<main>.main()`` with *args* in the
    environment of the interpreter *python*."""
    return [str(python), "-c", BOOTSTRAP, main, *map(str, args)]


def environ():
    """The variables its environment needs besides its own: the sources."""
    return {f"LINOHOST_SOURCE_{name}": text for name, text in SOURCES.items()}
