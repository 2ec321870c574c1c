"""The one error type of the clovm use cases: a stable code and a one-line message.

The CLI prints ``message`` (and, indented, ``details`` such as a failed daemon's last log lines)
on stderr and exits nonzero; programs test ``code``, one of :mod:`clovm.core.codes` (the one
registry; the names below are re-exported from there for the importers of ``api.errors``).
"""

from __future__ import annotations

from ..core.codes import (
    ADDRESS_IN_USE,
    BAD_ARGUMENT,
    BAD_TOPOLOGY,
    DAEMON_FAILED,
    HOME_IN_USE,
    NOT_RUNNING,
    REMOTE_ERROR,
    UNKNOWN_DOMAIN,
    UNKNOWN_FAULT,
    UNKNOWN_HOST,
    UNKNOWN_SERVER,
    Code,
)

__all__ = [
    "ADDRESS_IN_USE",
    "BAD_ARGUMENT",
    "BAD_TOPOLOGY",
    "DAEMON_FAILED",
    "HOME_IN_USE",
    "NOT_RUNNING",
    "REMOTE_ERROR",
    "UNKNOWN_DOMAIN",
    "UNKNOWN_FAULT",
    "UNKNOWN_HOST",
    "UNKNOWN_SERVER",
    "ClovmError",
]


class ClovmError(Exception):
    """A use case failed. ``code`` is a :mod:`clovm.core.codes` code; ``message`` is one line."""

    def __init__(self, code: Code, message: str, details: list[str] | None = None):
        message = " ".join(message.split("\n")).strip()
        super().__init__(message)
        self.code, self.message = code, message
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        return self.message
