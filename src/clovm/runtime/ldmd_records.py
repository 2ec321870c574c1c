"""ldmd's records: what survives a restart of an ldmd — the SP's store and ``ldmd.json``.

:class:`LdmdRecords` is mixed into :class:`~clovm.runtime.ldmd.LdmdDaemon`. The service
processor's store of this PPAR (``Home.sp_file``: its saved configurations, the next and the
booted one, whether the running configuration changed since, and the domains of the last saved
one for the XSCF) and this control domain's ``var/opt/SUNWldm/ldmd.json`` (the boot of the
datacenter this ldmd last ran in, and when each domain started) are read at start and written
atomically after every handled event, only when they changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.ldm import PRIMARY, Ldmd, SpStore
from ..fsutil import atomic_write
from ..topology import ControlDomain
from .clock import EmuClock
from .home import Home


class LdmdRecords:
    """The records half of :class:`~clovm.runtime.ldmd.LdmdDaemon` (which provides the
    attributes declared here)."""

    home: Home
    name: str
    cd: ControlDomain
    clock: EmuClock
    machine: Ldmd
    log: Any
    _sp_written: dict[str, Any] | None
    _state_written: dict[str, Any] | None
    _sp_saved: list[str] | None

    # ---------------------------------------------------------------- this ldmd's own record
    @property
    def _state_file(self) -> Path:
        """``var/opt/SUNWldm/ldmd.json`` of this control domain: the boot of the datacenter it last
        ran in (``clock.boot``) and when each of its domains started (their uptime survives)."""
        return self.home.host_root(self.name) / "var/opt/SUNWldm/ldmd.json"

    def _read_state(self) -> dict[str, Any]:
        try:
            v = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return v if isinstance(v, dict) else {}

    def _write_state(self) -> None:
        doc = {
            "boot": self.clock.boot,
            "started": {
                d.name: d.started_at for d in self.machine.domains() if d.name != PRIMARY and d.started_at is not None
            },
        }
        if doc != self._state_written:
            atomic_write(self._state_file, json.dumps(doc) + "\n")
            self._state_written = doc

    # ---------------------------------------------------------------- the service processor's store
    def _read_sp(self) -> SpStore | None:
        """The SP's store of this PPAR (``Home.sp_file``); None if it holds nothing yet."""
        try:
            raw = json.loads(self.home.sp_file(self.cd.server, self.cd.ppar).read_text())
            configs = tuple((str(n), frozenset(str(x) for x in doms)) for n, doms in raw["configs"])
            return SpStore(configs, str(raw["next"]), str(raw["booted"]), bool(raw["changed"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.log.error("sp_store_unreadable", error=str(e))
            return None

    def _read_sp_saved(self) -> list[str] | None:
        try:
            saved = json.loads(self.home.sp_file(self.cd.server, self.cd.ppar).read_text()).get("saved")
        except (OSError, ValueError, AttributeError):
            return None
        return sorted(str(x) for x in saved) if isinstance(saved, list) else None

    def _write_sp(self) -> None:
        """Write the SP's store when it changed (``add-spconfig`` & co.; the running configuration
        changing since it was saved). Done before any reply of the same event leaves."""
        sp = self.machine.sp_store()
        doc = {
            "configs": [[n, sorted(doms)] for n, doms in sp.configs],
            "next": sp.next,
            "booted": sp.booted,
            "changed": sp.changed,
            "saved": self._sp_saved,
        }
        if doc != self._sp_written:
            atomic_write(self.home.sp_file(self.cd.server, self.cd.ppar), json.dumps(doc, indent=1) + "\n")
            self._sp_written = doc
