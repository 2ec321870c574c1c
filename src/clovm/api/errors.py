"""The one error type of the clovm use cases: a stable code and a one-line message.

The CLI prints ``message`` (and, indented, ``details`` such as a failed daemon's last log lines)
on stderr and exits nonzero; programs test ``code``.
"""

from __future__ import annotations

# ---- stable codes ---------------------------------------------------------------------------
HOME_IN_USE = "HOME_IN_USE"  # the home already runs a datacenter
ADDRESS_IN_USE = "ADDRESS_IN_USE"  # an address/port of the topology is taken
BAD_TOPOLOGY = "BAD_TOPOLOGY"  # the topology does not load or validate
BAD_ARGUMENT = "BAD_ARGUMENT"  # a use case was given a bad value (time scale, fault arguments)
NOT_RUNNING = "NOT_RUNNING"  # the home runs no datacenter (or not the daemon asked for)
DAEMON_FAILED = "DAEMON_FAILED"  # a daemon did not start or did not answer
UNKNOWN_HOST = "UNKNOWN_HOST"  # not a control domain or guest of the topology
UNKNOWN_SERVER = "UNKNOWN_SERVER"  # not a server of the topology
UNKNOWN_DOMAIN = "UNKNOWN_DOMAIN"  # not a guest domain of the topology
UNKNOWN_FAULT = "UNKNOWN_FAULT"  # not a fault kind `clovm fault` knows
REMOTE_ERROR = "REMOTE_ERROR"  # a daemon answered a request with an error


class ClovmError(Exception):
    """A use case failed. ``code`` is one of the constants above; ``message`` is one line."""

    def __init__(self, code: str, message: str, details: list[str] | None = None):
        message = " ".join(message.split("\n")).strip()
        super().__init__(message)
        self.code, self.message = code, message
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        return self.message
