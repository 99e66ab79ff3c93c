"""The one error family of linohost.

The library raises these; only the CLI turns them into one line on stderr and
an exit code (2 for anything the user can fix, 1 for a failure of the world).
"""


class LinohostError(Exception):
    """Base class: a message for people and the exit code the CLI uses."""

    exit_code = 2


class UsageError(LinohostError):
    """Bad input: a name, an option, an unknown site or app."""


class ConfigError(LinohostError):
    """The host configuration file is missing, unparsable or invalid."""


class NotInitialised(LinohostError):
    """The host root has not been set up with ``linohost init``."""


class Conflict(LinohostError):
    """Something with that name already exists."""


class ServiceUnavailable(LinohostError):
    """A database server (or another service) cannot be reached."""


class StepFailed(LinohostError):
    """An external step (pip, manage.py, a database command) failed."""

    exit_code = 1

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class Cancelled(LinohostError):
    """The user declined a confirmation: nothing was done (exit 1: not bad input,
    but the command did not do what it was asked to)."""

    exit_code = 1


class Interrupted(LinohostError):
    """Ctrl-C (SIGINT): what was begun has been undone; exit 130 as shells do."""

    exit_code = 130
