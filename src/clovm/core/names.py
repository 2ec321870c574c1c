"""The product's naming rules, checked before a name becomes part of a path or a command.

Domain names follow Oracle VM Server for SPARC's ``ldm`` (a letter or digit first, then letters,
digits and ``_ . + -``, at most 64 characters); host and server names are RFC 1123 host names
(dot-separated labels of letters, digits and inner hyphens); saved configurations follow ``ldm
add-spconfig``; CF node names are PRIMECLUSTER's (at most 31 characters of letters, digits, ``_``
and ``-``). None of them can contain a ``/`` or be ``.`` or ``..``, so no name can reach outside
the directory it is used in.
"""

from __future__ import annotations

import re

DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")
HOST = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
SPCONFIG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,63}")
CF_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,30}")

_RULES = {
    "domain": (DOMAIN, "a letter or digit, then at most 63 letters, digits, '_', '.', '+' or '-'"),
    "host": (HOST, "a host name: labels of letters, digits and inner '-', separated by '.'"),
    "server": (HOST, "a host name: labels of letters, digits and inner '-', separated by '.'"),
    "spconfig": (SPCONFIG, "a letter or digit, then at most 63 letters, digits, '.', '_', '@', '+' or '-'"),
    "cf node": (CF_NODE, "a letter or digit, then at most 30 letters, digits, '_' or '-'"),
}


def problem(kind: str, name: object) -> str | None:
    """What is wrong with ``name`` as a ``kind`` name (one phrase), or None if it is valid."""
    pattern, rule = _RULES[kind]
    if not isinstance(name, str) or not pattern.fullmatch(name):
        return f"{name!r} is not a valid {kind} name ({rule})"
    return None
