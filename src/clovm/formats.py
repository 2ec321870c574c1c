"""Parsers and renderers for the text files of an emulated PRIMECLUSTER / Solaris host.

Pure functions over strings (no I/O, no clock); every parse error is a :class:`FormatError`
that names the 1-based line number and what is wrong.

``etc/default/cluster.config`` (CF)
    ``Name Value`` tuples, one per line. ``Name`` is the first token (at most 31 bytes, unique in
    the file); ``Value`` is a string in double or single quotes (no newline inside the quotes,
    at most 4096 characters); a line whose first character is a quote continues the previous
    value; a line whose first character is ``#`` is a comment; at most 100 pairs.
    Example: ``CLUSTER_TIMEOUT "600"``.

``etc/opt/SMAW/SMAWsf/rcsd.cfg`` (SF)
    One line per cluster host::

        CFName[,weight=W][,admIP=IP]:agent=SA,timeout=T[:agent=SA2,timeout=T2]...

    ``admnIP`` is accepted as an alias of ``admIP`` (the 4.5 guide uses both spellings); weight
    defaults to 1. ``#`` lines and blank lines are ignored. IPv6 ``admIP`` values may contain
    colons: the host part ends at the first ``:agent=``.

``etc/opt/SMAW/SMAWsf/SA_xscfsnmp.cfg`` (SF, XSCF SNMP agents) — clovm's own format, since the
product's is not public. ``#`` lines and blank lines are ignored; every other line is one
cluster host, seven whitespace-separated fields plus an optional eighth::

    # cf_name ppar_id domain lan0 lan1 user connection [device]
    cfguest1 0 guest1 10.20.30.71 10.20.40.71 xuser ssh

    cf_name     CF node name (unique in the file)
    ppar_id     PPAR-ID of the partition hosting the domain now, 0..31
    domain      logical-domain name on that PPAR
    lan0 lan1   XSCF-LAN#0 / XSCF-LAN#1 IP addresses (IPv4 or IPv6)
    user        XSCF user name
    connection  ``ssh`` or ``telnet``
    device      optional, defaults to ``xscf`` (rendered only when different)

    XSCF passwords are NOT in this file; they live in a separate 0600 secrets file.

``etc/inet/hosts``
    ``address name [alias...]`` per line, ``#`` starts a comment. The first line that names a
    host wins (as the resolver does); look-ups by :func:`resolve` ignore case.

``var/adm/messages``: see :func:`syslog_line`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

from .core import defaults
from .core.sfconfig import NAME, AgentRef, SfHost, XscfEntry, entry_problem, is_ip
from .core.sfconfig import PPAR_MAX as _PPAR_MAX

__all__ = [
    "DEFAULT_CLUSTER_TIMEOUT",
    "SA_XSCFSNMP_HEADER",
    "FormatError",
    "get_cluster_timeout",
    "parse_cluster_config",
    "parse_hosts",
    "parse_rcsd",
    "parse_sa_xscfsnmp",
    "render_hosts",
    "render_rcsd",
    "render_sa_xscfsnmp",
    "resolve",
    "set_cluster_timeout",
    "syslog_line",
]


class FormatError(ValueError):
    """A configuration file does not follow its format. ``line`` is 1-based (0: whole file)."""

    def __init__(self, line: int, problem: str, source: str = "") -> None:
        self.line = line
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}line {line}: {problem}" if line else f"{where}{problem}")


# ------------------------------------------------------------------------------------------
# cluster.config

DEFAULT_CLUSTER_TIMEOUT = defaults.DEFAULT_CLUSTER_TIMEOUT  # (core.defaults)
_CC = "cluster.config"
_CC_NAME_MAX = 31
_CC_VALUE_MAX = 4096
_CC_PAIRS_MAX = 100
_CC_QUOTED = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")
_CC_NAME = re.compile(r"\s*(\S+)(.*)\Z", re.DOTALL)
_DIGITS = re.compile(r"[0-9]+\Z")


def _cc_values(rest: str, lineno: int) -> str:
    """Concatenate the quoted strings of ``rest`` (which must consist of nothing else)."""
    out: list[str] = []
    pos = 0
    rest = rest.rstrip()
    while pos < len(rest):
        if rest[pos].isspace():
            pos += 1
            continue
        m = _CC_QUOTED.match(rest, pos)
        if m is None:
            if rest[pos] in "\"'":
                raise FormatError(lineno, f"unterminated quote in {rest!r}", _CC)
            raise FormatError(lineno, f"value must be in double or single quotes: {rest[pos:]!r}", _CC)
        out.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    if not out:
        raise FormatError(lineno, "name without a value", _CC)
    return "".join(out)


def _cc_entries(text: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, value, 0-based indices of the lines holding the pair) for every pair."""
    entries: list[tuple[str, str, tuple[int, ...]]] = []
    seen: dict[str, int] = {}
    for idx, raw in enumerate(text.splitlines()):
        lineno = idx + 1
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.lstrip()[0] in "\"'":
            if not entries:
                raise FormatError(lineno, "continuation line without a preceding name", _CC)
            name, value, where = entries[-1]
            value += _cc_values(raw, lineno)
            if len(value) > _CC_VALUE_MAX:
                raise FormatError(lineno, f"value of {name} longer than {_CC_VALUE_MAX} characters", _CC)
            entries[-1] = (name, value, where + (idx,))
            continue
        name, rest = _CC_NAME.match(raw).group(1, 2)  # type: ignore[union-attr]
        if '"' in name or "'" in name:
            raise FormatError(lineno, f"quote inside name {name!r}", _CC)
        if len(name.encode("utf-8")) > _CC_NAME_MAX:
            raise FormatError(lineno, f"name {name!r} longer than {_CC_NAME_MAX} bytes", _CC)
        if name in seen:
            raise FormatError(lineno, f"duplicate name {name} (first defined on line {seen[name]})", _CC)
        value = _cc_values(rest, lineno)
        if len(value) > _CC_VALUE_MAX:
            raise FormatError(lineno, f"value of {name} longer than {_CC_VALUE_MAX} characters", _CC)
        seen[name] = lineno
        entries.append((name, value, (idx,)))
        if len(entries) > _CC_PAIRS_MAX:
            raise FormatError(lineno, f"more than {_CC_PAIRS_MAX} name/value pairs", _CC)
    return entries


def parse_cluster_config(text: str) -> dict[str, str]:
    """Name -> value (quotes removed) of a cluster.config text, in file order."""
    return {name: value for name, value, _ in _cc_entries(text)}


def get_cluster_timeout(text: str) -> int:
    """CLUSTER_TIMEOUT in seconds; :data:`DEFAULT_CLUSTER_TIMEOUT` (10) when it is absent."""
    for name, value, where in _cc_entries(text):
        if name == "CLUSTER_TIMEOUT":
            v = value.strip()
            if not _DIGITS.match(v) or int(v) <= 0:
                raise FormatError(where[0] + 1, f"CLUSTER_TIMEOUT must be a positive integer, not {value!r}", _CC)
            return int(v)
    return DEFAULT_CLUSTER_TIMEOUT


def set_cluster_timeout(text: str, seconds: int) -> str:
    """``text`` with CLUSTER_TIMEOUT set to ``seconds``.

    The existing CLUSTER_TIMEOUT line is replaced (and continuation lines of its value dropped) in
    place by ``CLUSTER_TIMEOUT "<seconds>"``; if there is none, that line is appended. Every
    other line, comments included, is kept byte for byte.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise ValueError(f"CLUSTER_TIMEOUT must be a positive integer, not {seconds!r}")
    new_line = f'CLUSTER_TIMEOUT "{seconds}"'
    lines = text.splitlines(keepends=True)
    for name, _, where in _cc_entries(text):
        if name == "CLUSTER_TIMEOUT":
            first = lines[where[0]]
            ending = first[len(first.rstrip("\r\n")) :] or "\n"
            lines[where[0]] = new_line + ending
            for idx in reversed(where[1:]):  # continuation lines of the old value
                del lines[idx]
            return "".join(lines)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + new_line + "\n"


# ------------------------------------------------------------------------------------------
# rcsd.cfg

_RCSD = "rcsd.cfg"
_TOKEN = NAME


def _positive_int(text: str, what: str, lineno: int, source: str) -> int:
    if not _DIGITS.match(text) or int(text) <= 0:
        raise FormatError(lineno, f"{what} must be a positive integer, not {text!r}", source)
    return int(text)


def _parse_rcsd_line(line: str, lineno: int) -> SfHost:
    cut = line.find(":agent=")
    if cut < 0:
        raise FormatError(lineno, "no ':agent=SA_name,timeout=T' after the host part", _RCSD)
    host_part, agent_part = line[:cut], line[cut + 1 :]
    fields = host_part.split(",")
    cf_name = fields[0].strip()
    if not _TOKEN.match(cf_name):
        raise FormatError(lineno, f"bad CF node name {cf_name!r}", _RCSD)
    weight, adm_ip = 1, ""
    seen: set[str] = set()
    for field in fields[1:]:
        key, eq, value = (s.strip() for s in field.partition("="))
        key = "admIP" if key == "admnIP" else key
        if not eq or key not in ("weight", "admIP"):
            raise FormatError(lineno, f"unknown host attribute {field.strip()!r} (expected weight= or admIP=)", _RCSD)
        if key in seen:
            raise FormatError(lineno, f"{key} given twice", _RCSD)
        seen.add(key)
        if key == "weight":
            weight = _positive_int(value, "weight", lineno, _RCSD)
        else:
            if not value or any(c.isspace() or c == "," for c in value):
                raise FormatError(lineno, f"bad admIP {value!r}", _RCSD)
            adm_ip = value
    agents: list[AgentRef] = []
    for seg in agent_part.split(":"):
        parts = [p.strip() for p in seg.split(",")]
        if len(parts) != 2 or not parts[0].startswith("agent=") or not parts[1].startswith("timeout="):
            raise FormatError(lineno, f"expected 'agent=SA_name,timeout=T', got {seg.strip()!r}", _RCSD)
        name = parts[0][len("agent=") :]
        if not _TOKEN.match(name):
            raise FormatError(lineno, f"bad agent name {name!r}", _RCSD)
        agents.append(AgentRef(name, _positive_int(parts[1][len("timeout=") :], "timeout", lineno, _RCSD)))
    return SfHost(cf_name=cf_name, weight=weight, adm_ip=adm_ip, agents=tuple(agents))


def parse_rcsd(text: str) -> tuple[SfHost, ...]:
    """The hosts of an rcsd.cfg text, in file order. Blank and ``#`` lines are ignored."""
    hosts: list[SfHost] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        host = _parse_rcsd_line(line, lineno)
        if host.cf_name in seen:
            raise FormatError(lineno, f"duplicate host {host.cf_name} (first on line {seen[host.cf_name]})", _RCSD)
        seen[host.cf_name] = lineno
        hosts.append(host)
    return tuple(hosts)


def render_rcsd(hosts: Iterable[SfHost]) -> str:
    """rcsd.cfg text: ``cf,weight=W[,admIP=IP]:agent=A,timeout=T...`` one line per host."""
    out: list[str] = []
    for h in hosts:
        if not _TOKEN.match(h.cf_name):
            raise ValueError(f"bad CF node name {h.cf_name!r}")
        if h.weight <= 0:
            raise ValueError(f"{h.cf_name}: weight must be positive")
        if any(c.isspace() or c == "," for c in h.adm_ip) or ":agent=" in h.adm_ip:
            raise ValueError(f"{h.cf_name}: bad admIP {h.adm_ip!r}")
        if not h.agents:
            raise ValueError(f"{h.cf_name}: at least one agent is required")
        head = f"{h.cf_name},weight={h.weight}" + (f",admIP={h.adm_ip}" if h.adm_ip else "")
        segs = []
        for a in h.agents:
            if not _TOKEN.match(a.name) or a.timeout <= 0:
                raise ValueError(f"{h.cf_name}: bad agent {a!r}")
            segs.append(f"agent={a.name},timeout={a.timeout}")
        out.append(head + ":" + ":".join(segs) + "\n")
    return "".join(out)


# ------------------------------------------------------------------------------------------
# SA_xscfsnmp.cfg

_SAX = "SA_xscfsnmp.cfg"
SA_XSCFSNMP_HEADER = (
    "# SA_xscfsnmp.cfg: XSCF of each cluster host's domain (clovm format; passwords are elsewhere)\n"
    "# cf_name ppar_id domain lan0 lan1 user connection [device]\n"
)
_FIELD = re.compile(r"\S+\Z")
_ip = is_ip
_check_entry = entry_problem  # the one check of an SA_xscfsnmp.cfg entry (core.sfconfig)


def parse_sa_xscfsnmp(text: str) -> tuple[XscfEntry, ...]:
    """The entries of an SA_xscfsnmp.cfg text (format in the module docstring)."""
    entries: list[XscfEntry] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split()
        if len(f) not in (7, 8):
            raise FormatError(
                lineno,
                f"expected 7 or 8 fields (cf_name ppar_id domain lan0 lan1 user connection [device]), got {len(f)}",
                _SAX,
            )
        if not _DIGITS.match(f[1]):
            raise FormatError(lineno, f"PPAR-ID must be an integer 0..{_PPAR_MAX}, not {f[1]!r}", _SAX)
        e = XscfEntry(f[0], int(f[1]), f[2], f[3], f[4], f[5], f[6], *(f[7:] or ["xscf"]))
        problem = _check_entry(e)
        if problem:
            raise FormatError(lineno, problem, _SAX)
        if e.cf_name in seen:
            raise FormatError(lineno, f"duplicate host {e.cf_name} (first on line {seen[e.cf_name]})", _SAX)
        seen[e.cf_name] = lineno
        entries.append(e)
    return tuple(entries)


def render_sa_xscfsnmp(entries: Iterable[XscfEntry]) -> str:
    """SA_xscfsnmp.cfg text: :data:`SA_XSCFSNMP_HEADER` then one line per entry."""
    lines = [SA_XSCFSNMP_HEADER]
    for e in entries:
        problem = _check_entry(e)
        if problem:
            raise ValueError(f"{e.cf_name}: {problem}")
        fields = [e.cf_name, str(e.ppar_id), e.domain, e.lan0, e.lan1, e.user, e.connection]
        if e.device != "xscf":
            fields.append(e.device)
        lines.append(" ".join(fields) + "\n")
    return "".join(lines)


# ------------------------------------------------------------------------------------------
# hosts

_HOSTS = "hosts"
_HOSTS_HEADER = "#\n# Internet host table\n#\n"


def parse_hosts(text: str) -> dict[str, str]:
    """Host name (and every alias) -> address. The first line naming a host wins."""
    table: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        addr, names = fields[0], fields[1:]
        if not _ip(addr):
            raise FormatError(lineno, f"{addr!r} is not an IP address", _HOSTS)
        if not names:
            raise FormatError(lineno, f"address {addr} without a host name", _HOSTS)
        for name in names:
            table.setdefault(name, addr)
    return table


def resolve(text: str, name_or_ip: str) -> str | None:
    """Address of ``name_or_ip`` per the hosts ``text``; an IP literal resolves to itself.

    Name look-up ignores case; None when the name is not in the table.
    """
    if _ip(name_or_ip):
        return name_or_ip
    wanted = name_or_ip.lower()
    for name, addr in parse_hosts(text).items():
        if name.lower() == wanted:
            return addr
    return None


def render_hosts(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> str:
    """hosts text from ``(name, address)`` pairs (or a name -> address mapping), one per line."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    out = [_HOSTS_HEADER]
    for name, addr in items:
        if not _ip(addr):
            raise ValueError(f"{addr!r} is not an IP address")
        if not _FIELD.match(name) or name.startswith("#"):
            raise ValueError(f"bad host name {name!r}")
        out.append(f"{addr}\t{name}\n")
    return "".join(out)


# ------------------------------------------------------------------------------------------
# syslog (/var/adm/messages)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _default_priority(msgid: str) -> str:
    if _DIGITS.match(msgid):
        n = int(msgid)
        if 2000 <= n < 4000:
            return "daemon.info"
        if 4000 <= n < 6000:
            return "daemon.warning"
        if 6000 <= n < 8000:
            return "daemon.err"
        return "daemon.notice"
    if msgid.upper().startswith(("WRP", "WRN")):
        return "daemon.warning"
    if msgid.upper().startswith("ERR"):
        return "daemon.err"
    return "daemon.notice"


def log_stamp(wall: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` (UTC): the stamp of the plain-text node logs (rcsd.log, SA_*.log, switchlog)."""
    ms = int((wall % 1) * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(wall))) + f".{ms:03d}"


def node_log_line(wall: float, host: str, tag: str, dest: str, text: str, msgid: str = "") -> str:
    """The line a node writes for one log entry of machine ``tag`` to ``dest``: a syslog line for
    ``messages`` (the tag is the syslog tag, so a ``"CF: "`` prefix of the text is dropped), else
    the text after a :func:`log_stamp`."""
    if dest == "messages":
        return syslog_line(wall, host, tag, text.removeprefix(f"{tag}: "), msgid)
    return f"{log_stamp(wall)} {text}"


def log_message(dest: str, line: str) -> str:
    """The message of a line :func:`node_log_line` wrote, without its time stamp: for
    ``messages`` ``"TAG: [ID n facility.level] text"`` (the host name dropped too), else the text."""
    if dest == "messages":
        return line[16:].split(" ", 1)[1] if len(line) > 16 else line  # "Mmm dd HH:MM:SS host ..."
    return line[24:]  # "YYYY-MM-DD HH:MM:SS.mmm "


def syslog_line(
    wallclock_epoch: float,
    host: str,
    tag: str,
    text: str,
    msgid: str = "",
    *,
    priority: str | None = None,
) -> str:
    """One /var/adm/messages line (no trailing newline), Solaris style, time in UTC::

        Nov 25 06:22:01 guest2 SMAWsf: [ID 7245 daemon.err] text
        Dec  3 00:00:05 guest1 RMS: [ID 0 daemon.warning] (WRP, 34) Cluster host ...

    * Timestamp: ``Mmm dd HH:MM:SS`` with the day padded by a space (as Solaris syslogd), from
      ``wallclock_epoch`` in UTC; sub-second parts are dropped.
    * ``[ID n facility.level]``: where Solaris prints its message hash, ``n`` is the product
      message number when ``msgid`` is all digits, so ``grep 'ID 7245 ' messages`` finds it.
      Otherwise ``n`` is ``0`` (never a number that could match a grep for a message number);
      RMS messages carry their id in ``text`` itself ("(WRP, 34) ..."), which is unchanged.
    * ``facility.level`` is ``priority`` if given, else derived from ``msgid``: 2000-3999
      ``daemon.info``, 4000-5999 ``daemon.warning``, 6000-7999 ``daemon.err`` (PRIMECLUSTER's
      information/warning/error ranges); ``WRP``/``WRN`` ids ``daemon.warning``; ``ERR`` ids
      ``daemon.err``; anything else ``daemon.notice``.
    * Newlines inside ``text`` become single spaces: one message, one line.
    """
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"bad host name {host!r}")
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"bad syslog tag {tag!r}")
    t = time.gmtime(int(wallclock_epoch // 1))
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    number = msgid if _DIGITS.match(msgid) else "0"
    body = " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text
    return f"{stamp} {host} {tag}: [ID {number} {priority or _default_priority(msgid)}] {body}"
