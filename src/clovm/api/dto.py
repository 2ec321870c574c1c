"""What the product-command use cases return (pcs ``common/*_dto``): plain data, no behaviour.

The CLI renders these (:mod:`clovm.cli.render`); the rows also accept anything with the same
attributes, so the renderers stay usable for the simulator's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..core.sfconfig import XscfEntry

__all__ = [
    "CftoolRow",
    "Hvdisp",
    "HvdispRow",
    "JournalView",
    "LdmResult",
    "MigrateOutcome",
    "Outcome",
    "SdtoolRow",
    "XscfEntry",
]


class CftoolRow(NamedTuple):
    """One node of ``cftool -n``."""

    node: str
    number: int
    state: Any  # NodeState or str; printed with str()
    os: str = "Solaris"
    cpu: str = "Sparc"


class SdtoolRow(NamedTuple):
    """One (cluster host, shutdown agent) of ``sdtool -s``."""

    host: str
    agent: str
    sa_state: str
    shut_state: str
    test_state: str
    init_state: str


class HvdispRow(NamedTuple):
    """One RMS resource of ``hvdisp``."""

    name: str  # resource name, e.g. "app1" or "cfguest1RMS"
    type: str  # "userApplication" or "SysNode"
    host: str  # SysNode the state is reported for ("" for a SysNode itself)
    state: Any  # AppState, "Online", "Offline", "Faulted", ...; printed with str()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Hvdisp:
    """``hvdisp``: the local RMS system's name ("" if unknown) and the resources."""

    local_system: str
    rows: list[HvdispRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LdmResult:
    """An ``ldm`` sub-command as the ldmd ran it."""

    rc: int
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a clovmmigrate run finished: its exit code, a stable code (None when rc is 0) and its
    last message (already printed)."""

    rc: int
    code: str | None
    message: str


@dataclass(frozen=True, slots=True)
class MigrateOutcome:
    """How a ``clovm migrate`` run finished (as :class:`Outcome`), for which domain, and the last
    journal written or read (None if the run refused before it read one)."""

    rc: int
    code: str | None
    message: str
    domain: str
    journal: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JournalView:
    """A recorded ``clovm migrate`` of ``domain``: its journal, at ``path`` relative to the host's root."""

    domain: str
    path: str
    journal: dict[str, Any]
