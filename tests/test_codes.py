"""The code registry (clovm.core.codes) is the one place a code is defined.

(a) every code constant is its own name; (b) every code of the registry is used in ``src/``
(as ``codes.X`` or imported from the registry);
(c) no string literal equal to a registered code appears in ``src/`` outside the registry: strict
for every module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from clovm.core import codes

SRC = Path(__file__).resolve().parents[1] / "src" / "clovm"
REGISTRY = SRC / "core" / "codes.py"
REEXPORTS = {SRC / "api" / "errors.py"}  # re-export codes for compatibility: no use of their own

CODES = {n: getattr(codes, n) for n in vars(codes) if n.isupper()}


def _files(roots: list[Path]) -> Iterator[Path]:
    for r in roots:
        yield from sorted(r.rglob("*.py")) if r.is_dir() else [r]


def _trees(roots: list[Path]) -> Iterator[tuple[Path, ast.AST]]:
    for f in _files(roots):
        if f != REGISTRY:
            yield f, ast.parse(f.read_text(encoding="utf-8"), str(f))


def _all_lists(tree: ast.AST) -> set[int]:
    """ids of the string constants of ``__all__ = [...]`` (names, not codes)."""
    return {
        id(c)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
        for c in ast.walk(n.value)
    }


def _spelled(roots: list[Path]) -> list[str]:
    """``file:line: 'CODE'`` of every string literal equal to a registered code."""
    values = set(CODES.values())
    out = []
    for f, tree in _trees(roots):
        names = _all_lists(tree)
        out += [
            f"{f.relative_to(SRC.parent)}:{n.lineno}: {n.value!r}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in values and id(n) not in names
        ]
    return sorted(out)


def test_every_code_is_its_own_name() -> None:
    assert CODES
    for name, value in CODES.items():
        assert value == name, f"codes.{name} is {value!r}"


def test_every_code_is_used_in_src() -> None:
    used: set[str] = set()
    for f, tree in _trees([SRC]):
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "codes":
                used.add(n.attr)
            elif isinstance(n, ast.ImportFrom) and (n.module or "").endswith("codes") and f not in REEXPORTS:
                used.update(a.name for a in n.names)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in CODES and f not in REEXPORTS:
                used.add(n.value)  # spelled: counts until its module is switched to codes.X (test (c))
    assert sorted(set(CODES) - used) == []


def test_no_code_is_spelled_in_the_switched_modules() -> None:
    assert _spelled([SRC]) == []


def test_the_registry_defines_each_code_once() -> None:
    tree = ast.parse(REGISTRY.read_text(encoding="utf-8"))
    names = [
        t.id
        for n in tree.body
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
    ]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
