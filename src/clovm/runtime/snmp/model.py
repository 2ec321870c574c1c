"""What the SNMP agent and client share besides the MIB: USM credentials, a request's result, errors."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SnmpAuthError", "SnmpCredentials", "SnmpError", "SnmpResult", "SnmpUnreachable"]


@dataclass(frozen=True, slots=True)
class SnmpCredentials:
    """An SNMPv3 USM user at security level authPriv (HMAC-SHA-256 + AES-128).

    Attributes:
        user: USM user name.
        auth_key: authentication pass phrase (at least 8 characters).
        priv_key: privacy pass phrase (at least 8 characters).
    """

    user: str
    auth_key: str
    priv_key: str


@dataclass(frozen=True, slots=True)
class SnmpResult:
    """Outcome of one XSCF request.

    Attributes:
        ok: the XSCF accepted the request (status: the domain is known; panic/reset: done).
        status: domain status word for a status query; ``""`` for panic and reset.
        text: human-readable text from the XSCF (reason on failure).
    """

    ok: bool
    status: str
    text: str


class SnmpError(Exception):
    """The XSCF answered, but not in a way this client understands (protocol-level error)."""


class SnmpUnreachable(SnmpError):
    """The XSCF did not answer usably: LAN/agent down, or the credentials are wrong.

    Fence agents should treat every ``SnmpUnreachable`` alike ("SP unreachable or credentials
    wrong"). A timeout raises this class itself; an explicit USM rejection raises the subclass
    ``SnmpAuthError``.
    """


class SnmpAuthError(SnmpUnreachable):
    """The XSCF answered with a USM report: wrong user, authentication key or privacy key."""
