"""Domain errors. The CLI prints ``str(error)`` as one line and exits non-zero."""

from __future__ import annotations


class AutotransferError(Exception):
    """Base class: the message names the file, key or id involved and what was expected."""


class DataError(AutotransferError):
    """The user's dataset cannot be read or is not usable for classification."""


class SpaceError(AutotransferError):
    """A search-space file is missing, malformed or out of range."""


class BackboneError(AutotransferError):
    """A backbone id is unknown, or its weights cannot be loaded."""


class StorageError(AutotransferError):
    """A storage URL is malformed or the database cannot be reached."""


class PluginError(AutotransferError):
    """A plugin broke the contract of a hook."""


class HubUnreachable(AutotransferError):
    """The Hugging Face Hub did not answer a metadata query (network down, timeout, HTTP
    error); not a broken plugin: the query fails in one line."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (for one-line errors)."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


class OptionError(AutotransferError):
    """A bad argument of the Python API, named by its Python name.

    ``str(error)`` is ``option + problem``, e.g. ``"trials must be >= 1, got 0"``; the CLI shows
    the same problem after the option's flag (``"--trials must be >= 1, got 0"``).
    """

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}{problem}")
        self.option = option
        self.problem = problem

    def __reduce__(self):  # picklable across worker processes despite the two arguments
        return type(self), (self.option, self.problem)
