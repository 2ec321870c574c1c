"""Byte-exact text of the admin commands' tables (pure functions; each result ends with "\\n").

Layouts of ``sdtool -s`` and ``clsnmpsetup -l`` are copied character for character from the
seed (PRIMECLUSTER 4.5 IAG 17.3.1.2, Figure 17.1 example). A value wider than its column is
still followed by one space, so columns never run together; the last column is never padded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..api.dto import CftoolRow, HvdispRow
from ..core.sfconfig import XscfEntry

__all__ = [  # CftoolRow and HvdispRow are clovm.api.dto's rows, re-exported
    "HVDISP_CONFIGURATION",
    "CftoolRow",
    "HvdispRow",
    "cfset_a",
    "cftool_n",
    "clsnmpsetup_l",
    "hvdisp",
    "ldm_list_spconfig",
    "sdtool_s",
]


def _table(widths: Sequence[int], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned cells, cell i padded to widths[i] (at least one trailing space); last unpadded."""
    out = []
    for cells in rows:
        parts = [c.ljust(w - 1) + " " for c, w in zip(cells[:-1], widths, strict=False)]
        out.append(("".join(parts) + cells[-1]).rstrip())
    return out


def _lines(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------------------------------
# sdtool -s

_SDTOOL_HEAD = ("Cluster Host", "Agent", "SA State", "Shut State", "Test State", "Init State")
_SDTOOL_WIDTHS = (16, 21, 14, 12, 12)


def sdtool_s(rows: Iterable[Any]) -> str:
    """``sdtool -s``: one line per (cluster host, agent).

    Each row has attributes ``host``, ``agent`` (printed with a ".so" suffix), ``sa_state``,
    ``shut_state``, ``test_state``, ``init_state`` (printed with ``str()``).
    """
    body = []
    for r in rows:
        agent = str(r.agent)
        if not agent.endswith(".so"):
            agent += ".so"
        body.append((str(r.host), agent, str(r.sa_state), str(r.shut_state), str(r.test_state), str(r.init_state)))
    dashes = tuple("-" * len(h) for h in _SDTOOL_HEAD)
    return _lines(_table(_SDTOOL_WIDTHS, [_SDTOOL_HEAD, dashes, *body]))


# ------------------------------------------------------------------------------------------
# clsnmpsetup -l

_CLSNMP_HEAD = (
    "device-name",
    "cluster-host-name",
    "PPAR-ID",
    "domain-name",
    "IP-address1",
    "IP-address2",
    "user-name",
    "connection-type",
)
_CLSNMP_WIDTHS = (12, 19, 9, 13, 16, 16, 15)
_CLSNMP_RULE = "-" * 115  # as long as the header line


def clsnmpsetup_l(entries: Iterable[XscfEntry]) -> str:
    """``clsnmpsetup -l``: header, a 115-character dash line, one line per XSCF entry."""
    body = [(e.device, e.cf_name, str(e.ppar_id), e.domain, e.lan0, e.lan1, e.user, e.connection) for e in entries]
    head, *rows = _table(_CLSNMP_WIDTHS, [_CLSNMP_HEAD, *body])
    return _lines([head, _CLSNMP_RULE, *rows])


# ------------------------------------------------------------------------------------------
# cftool -n


def cftool_n(rows: Iterable[Any]) -> str:
    """``cftool -n``: ``Node Number State Os Cpu``.

    Rows are objects with ``node``, ``number``, ``state`` and optionally ``os`` (default
    "Solaris") and ``cpu`` (default "Sparc"), e.g. :class:`CftoolRow`. Column widths: Node 12,
    Number 7, State 12 (fits LEFTCLUSTER), Os 8; each grows to the longest value plus one.
    """
    body = [
        (
            str(r.node),
            str(r.number),
            str(r.state),
            str(getattr(r, "os", "Solaris")),
            str(getattr(r, "cpu", "Sparc")),
        )
        for r in rows
    ]
    head = ("Node", "Number", "State", "Os", "Cpu")
    mins = (12, 7, 12, 8)
    widths = [max([m] + [len(b[i]) + 1 for b in body]) for i, m in enumerate(mins)]
    return _lines(_table(widths, [head, *body]))


# ------------------------------------------------------------------------------------------
# cfset -a


def cfset_a(values: Mapping[str, Any]) -> str:
    """``cfset -a``: ``KEY: name  VALUE: value`` per setting, CFCP and CFSH first, then the rest
    in mapping order. Only the given values are printed (no defaults are invented)."""
    order = [k for k in ("CFCP", "CFSH") if k in values] + [k for k in values if k not in ("CFCP", "CFSH")]
    lines = ["From cfset configuration in CF module:"]
    lines += [f"KEY: {k}  VALUE: {values[k]}" for k in order]
    return _lines(lines)


# ------------------------------------------------------------------------------------------
# ldm list-spconfig


def ldm_list_spconfig(names_with_labels: Iterable[tuple[str, str]]) -> str:
    """``ldm list-spconfig``: one configuration per line, ``name`` or ``name [label]``.

    ``label`` is e.g. "current", "next poweron" or "" (brackets are added unless present).
    """
    lines = []
    for name, label in names_with_labels:
        label = label.strip()
        if label and not label.startswith("["):
            label = f"[{label}]"
        lines.append(f"{name} {label}" if label else name)
    return _lines(lines)


# ------------------------------------------------------------------------------------------
# hvdisp -a

HVDISP_CONFIGURATION = "/opt/SMAW/SMAWRrms/build/config.us"


def hvdisp(rows: Iterable[Any], local_system: str = "", configuration: str = HVDISP_CONFIGURATION) -> str:
    """RMS state table in the manner of ``hvdisp -a``::

        Local System:  cfguest1RMS
        Configuration: /opt/SMAW/SMAWRrms/build/config.us

        Resource            Type             HostName            State        StateDetails
        ----------------------------------------------------------------------------------
        cfguest1RMS         SysNode                              Online
        app1                userApplication  cfguest1RMS         Online

    Rows have ``name``, ``type``, ``host``, ``state`` and optionally ``detail`` (e.g.
    :class:`HvdispRow`). The two header lines are printed only when ``local_system`` is given.
    Column widths: Resource 20, Type 17, HostName 20, State 13 — each grows to the longest
    value plus one. The dash line is as long as the header line.
    """
    body = [(str(r.name), str(r.type), str(r.host), str(r.state), str(getattr(r, "detail", "") or "")) for r in rows]
    head = ("Resource", "Type", "HostName", "State", "StateDetails")
    mins = (20, 17, 20, 13)
    widths = [max([m] + [len(b[i]) + 1 for b in body]) for i, m in enumerate(mins)]
    head_line, *lines = _table(widths, [head, *body])
    out = []
    if local_system:
        out += [f"Local System:  {local_system}", f"Configuration: {configuration}", ""]
    out += [head_line, "-" * len(head_line), *lines]
    return _lines(out)
