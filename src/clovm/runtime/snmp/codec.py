"""The emulated XSCF MIB as numbers: its OIDs, column and value codes, and the row-index codec.

Shared by the agent and the client; pure (no pysnmp). The MIB (an *emulation* subtree under
Fujitsu's enterprise number, not a real Fujitsu MIB) is described in ``docs/xscf-mib.md``; in
short::

    xscfEmuMIB         1.3.6.1.4.1.211.1.3.99
      xscfAgentName    .1.1.0   DisplayString  read-only
      xscfAgentLan     .1.2.0   Integer32      read-only   LAN the request arrived on (0, 1)
      xscfDomainEntry  .1.3.1   INDEX { xscfDomainPpar, xscfDomainName }  (ppar, len, chars...)
        .3 xscfDomainResult        INTEGER ok(1) error(2)           read-only  (asks backend.status)
        .4 xscfDomainStatus        DisplayString                    read-only  (asks backend.status)
        .5 xscfDomainText          DisplayString                    read-only  (asks backend.status)
        .6 xscfDomainAction        INTEGER status(1) panic(2) reset(3) read-write
        .7 xscfDomainActionResult  INTEGER none(0) ok(1) error(2)   read-only  (last action on row)
        .8 xscfDomainActionText    DisplayString                    read-only  (last action on row)
"""

from __future__ import annotations

__all__ = [
    "ACTION_PANIC",
    "ACTION_RESET",
    "ACTION_STATUS",
    "COL_ACTION",
    "COL_ACTION_RESULT",
    "COL_ACTION_TEXT",
    "COL_RESULT",
    "COL_STATUS",
    "COL_TEXT",
    "OID_AGENT_LAN",
    "OID_AGENT_NAME",
    "OID_DOMAIN_ENTRY",
    "RESULT_ERROR",
    "RESULT_NONE",
    "RESULT_OK",
    "XSCF_EMU_MIB",
    "domain_row_index",
]

XSCF_EMU_MIB: tuple[int, ...] = (1, 3, 6, 1, 4, 1, 211, 1, 3, 99)
"""Root of the emulation subtree (Fujitsu enterprise 211; not a real Fujitsu MIB)."""

_OBJECTS = XSCF_EMU_MIB + (1,)
OID_AGENT_NAME = _OBJECTS + (1, 0)
OID_AGENT_LAN = _OBJECTS + (2, 0)
OID_DOMAIN_ENTRY = _OBJECTS + (3, 1)
_ENTRY = OID_DOMAIN_ENTRY

COL_RESULT = 3
COL_STATUS = 4
COL_TEXT = 5
COL_ACTION = 6
COL_ACTION_RESULT = 7
COL_ACTION_TEXT = 8
_STATUS_COLUMNS = (COL_RESULT, COL_STATUS, COL_TEXT)
_LOCAL_COLUMNS = (COL_ACTION, COL_ACTION_RESULT, COL_ACTION_TEXT)

ACTION_STATUS = 1
ACTION_PANIC = 2
ACTION_RESET = 3
_ACTION_NAMES = {ACTION_STATUS: "status", ACTION_PANIC: "panic", ACTION_RESET: "reset"}

RESULT_NONE = 0
RESULT_OK = 1
RESULT_ERROR = 2

_MAX_NAME = 64
_SCALARS = (OID_AGENT_NAME, OID_AGENT_LAN)  # sorted; the only walkable objects


def domain_row_index(ppar: int, domain: str) -> tuple[int, ...]:
    """Encode the ``xscfDomainEntry`` index for a domain.

    Args:
        ppar: PPAR-ID (0..2147483647; an M10 has 0..15).
        domain: logical-domain name, 1..64 UTF-8 bytes.

    Returns:
        ``(ppar, len(name), byte1, byte2, ...)`` (a non-IMPLIED OCTET STRING index).

    Raises:
        ValueError: the PPAR-ID or the name is out of range.
    """
    raw = domain.encode("utf-8")
    if not 0 <= ppar <= 0x7FFFFFFF:
        raise ValueError(f"PPAR-ID out of range: {ppar}")
    if not 1 <= len(raw) <= _MAX_NAME:
        raise ValueError(f"domain name must be 1..{_MAX_NAME} bytes: {domain!r}")
    return (ppar, len(raw), *raw)


def _parse_row_index(suffix: tuple[int, ...]) -> tuple[int, str] | None:
    if len(suffix) < 3:
        return None
    ppar, length, chars = suffix[0], suffix[1], suffix[2:]
    if not 0 <= ppar <= 0x7FFFFFFF or not 1 <= length <= _MAX_NAME or len(chars) != length:
        return None
    if any(not 0 <= c <= 255 for c in chars):
        return None
    try:
        return ppar, bytes(chars).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _column_oid(column: int, ppar: int, domain: str) -> tuple[int, ...]:
    return _ENTRY + (column,) + domain_row_index(ppar, domain)
