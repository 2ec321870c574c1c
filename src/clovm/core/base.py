"""Base classes shared by every core machine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened (past tense). Don't subclass subclasses."""


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the driver must do (imperative)."""


@dataclass(frozen=True, slots=True)
class Ticked(Event):
    """The driver woke the machine at (or after) its ``next_deadline()``."""


@dataclass(frozen=True, slots=True)
class Log(Effect):
    """Write one line to a node log.

    ``dest`` names the file: "messages" (var/adm/messages), "rcsd" (rcsd.log),
    "switchlog" (RMS switchlog) or "SA_<agent>" (agent log). ``msgid`` is the
    product message number where one exists ("7245", "WRP 34"...), else "".
    """

    dest: str
    text: str
    msgid: str = ""


class Machine(Protocol):
    def handle(self, now: float, event: Event) -> Sequence[Effect]: ...

    def next_deadline(self) -> float | None: ...


class TransitionError(Exception):
    """An event arrived that the state table does not allow (a bug in the caller)."""
