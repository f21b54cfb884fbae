"""Errors a user can cause. Each message says what is wrong and what to do about it.

The CLI and the app print ``str(error)`` as one line; anything else is a bug and stays loud.
"""


class PtuningError(Exception):
    """Base class for every error a user can cause (bad file, bad option, bad adapter, Hub refusal)."""


class ConfigError(PtuningError, ValueError):
    """An option or a combination of options that cannot work (e.g. a malformed placement template)."""


class DataError(PtuningError, ValueError):
    """A data file that cannot be used as it is: missing column, empty text, one class only..."""


class AdapterError(PtuningError, ValueError):
    """An adapter directory or file that is missing, corrupt, hostile or does not match its backbone."""


class HubError(PtuningError, RuntimeError):
    """The Hub refused or could not serve a request: missing repo, rejected token, no network."""
