"""One base exception; narrow subclasses carry the data a message needs."""

from __future__ import annotations


class ChatopsError(Exception):
    """Base of every error chatops raises on purpose."""


class ConfigError(ChatopsError):
    """The configuration file is invalid. `problems` are (entry, field, message)."""

    def __init__(self, path: str, problems: list[tuple[str, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [
            f"{path}: {entry}: {field}: {msg}" if field else f"{path}: {entry}: {msg}"
            for entry, field, msg in problems
        ]
        super().__init__("invalid configuration\n" + "\n".join(lines))


class ActionError(ChatopsError):
    """An action failed in a way the model (and the user) should be told about."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ActionTimeoutError(ActionError):
    def __init__(self, action: str, timeout: float) -> None:
        super().__init__(f"{action} timed out after {timeout:g}s", transient=True)
        self.action = action
        self.timeout = timeout


class ModelError(ChatopsError):
    """The model could not give an answer (after the client's retries).

    `transient`: the server could not be reached or was overloaded (a timeout, a refused
    connection, HTTP 429 or 5xx), so the same request may succeed later; otherwise the
    server refused the request itself and asking again cannot help.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class LeftInPlace(ActionError):
    """A compensation found that what it would reverse is no longer only its own step's doing
    (another run or a person changed it since): it leaves it as it is, and says why."""
