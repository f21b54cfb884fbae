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


class NotFoundError(PtuningError, LookupError):
    """A name the server does not know: an adapter that was never registered (and may not be loaded from the Hub)."""


class RequestTooLargeError(PtuningError, ValueError):
    """A request over the server's limits: too many texts, or a text too long. The message names the limit."""


class OverloadedError(PtuningError, RuntimeError):
    """The server's queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after
