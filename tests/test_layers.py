"""The import contract of clovm's layers (README.md, "Layout"), read statically with ``ast``.

* ``src/clovm/core/`` imports only the standard library (``sys.stdlib_module_names``) and
  ``clovm.core`` (relative imports inside core resolve to ``clovm.core``);
* ``src/clovm/sim/`` never imports ``clovm.runtime``; ``src/clovm/runtime/`` never imports
  ``clovm.sim``;
* ``src/clovm/api/`` never imports ``clovm.cli``.

Every import of a module counts, wherever it stands: at the top, inside a function or a class, under
``if TYPE_CHECKING:`` or in a ``try``; so does ``importlib.import_module("...")`` /
``__import__("...")`` with a literal name. Relative imports are resolved against the importing
module's package (``from ..runtime import x`` inside ``clovm.sim`` is ``clovm.runtime.x``), and
``from PKG import NAME`` imports the module ``PKG.NAME`` when that module exists under src/.
Only direct imports are checked, not what the imported modules import in turn.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "clovm"


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    module: str  # absolute name of the imported module ("" if a relative import climbs out of the tree)
    source: str  # the statement as written

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {self.source}  ->  {self.module or '(outside the tree)'}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, src: Path) -> bool:
    """Is ``name`` a module or package under ``src``?"""
    base = src.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or base.is_dir()


def imports_of(path: Path, src: Path = SRC, text: str | None = None) -> Iterator[Import]:
    """Every module that the file ``path`` (module under ``src``) imports, anywhere in it."""
    text = path.read_text(encoding="utf-8") if text is None else text
    name = module_name(path, src)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    lines = [ln.encode() for ln in text.splitlines()]  # ast's column offsets count UTF-8 bytes

    def stmt(node: ast.stmt | ast.expr) -> str:  # the statement as written, on one line
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        if first == last:
            seg = [lines[first][node.col_offset : node.end_col_offset]]
        else:
            seg = [lines[first][node.col_offset :], *lines[first + 1 : last], lines[last][: node.end_col_offset]]
        return " ".join(b" ".join(seg).decode().split())

    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            source = stmt(node)
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, source)
        elif isinstance(node, ast.ImportFrom):
            source = stmt(node)
            if node.level:
                if node.level > len(package):
                    yield Import(path, node.lineno, "", source)
                    continue
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = [a.name for a in node.names if a.name != "*"]
            subs = [f"{mod}.{n}" for n in names if _is_module(f"{mod}.{n}", src)]
            if subs:  # from PKG import SUBMODULE[, attribute...]: both are imported
                yield from (Import(path, node.lineno, m, source) for m in subs)
                if len(subs) == len(names):
                    continue
            yield Import(path, node.lineno, mod, source)
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                yield Import(path, node.lineno, arg.value, stmt(node))


def _is_import_call(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def violations(layer: str, bad: Callable[[str], bool]) -> list[Import]:
    files = sorted((PKG / layer).rglob("*.py"))
    assert files, f"no modules under {PKG / layer}: the layer moved, so this contract checks nothing"
    return sorted((imp for f in files for imp in imports_of(f) if bad(imp.module)), key=lambda i: (str(i.path), i.line))


def report(rule: str, found: list[Import]) -> str:
    return f"{rule}: {len(found)} violation(s)\n" + "\n".join(f"  {v}" for v in found)


# ---------------------------------------------------------------------------------------------- the contract
def test_core_imports_only_the_standard_library_and_core() -> None:
    found = violations("core", lambda m: not (stdlib(m) or within(m, "clovm.core")))
    assert not found, report("src/clovm/core/ imports only the standard library and clovm.core", found)


def test_sim_never_imports_runtime() -> None:
    found = violations("sim", lambda m: within(m, "clovm.runtime"))
    assert not found, report("src/clovm/sim/ never imports clovm.runtime", found)


def test_runtime_never_imports_sim() -> None:
    found = violations("runtime", lambda m: within(m, "clovm.sim"))
    assert not found, report("src/clovm/runtime/ never imports clovm.sim", found)


def test_api_never_imports_cli() -> None:
    found = violations("api", lambda m: within(m, "clovm.cli"))
    assert not found, report("src/clovm/api/ never imports clovm.cli", found)


# ---------------------------------------------------------------------------------------------- the checker
SAMPLE = """
from __future__ import annotations
import os.path, json as j
from typing import TYPE_CHECKING
from . import base, not_a_module
from .base import Thing
from .. import runtime
from ..runtime.rpc import call
from ... import beyond
if TYPE_CHECKING:
    from clovm.cli import main
def f():
    import msgspec
    import importlib
    return importlib.import_module("clovm.runtime.spawn"), __import__("tomllib")
class C:
    from clovm import settings
"""


def test_the_checker_resolves_relative_imports_and_finds_them_anywhere(tmp_path: Path) -> None:
    for mod in (
        "clovm/__init__.py",
        "clovm/sim/__init__.py",
        "clovm/sim/base.py",
        "clovm/runtime/__init__.py",
        "clovm/runtime/rpc.py",
        "clovm/cli/__init__.py",
        "clovm/cli/main.py",
        "clovm/settings.py",
    ):
        (tmp_path / mod).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / mod).write_text("")
    path = tmp_path / "clovm" / "sim" / "x.py"
    got = sorted(((i.line, i.module) for i in imports_of(path, tmp_path, SAMPLE)), key=lambda x: x[0])
    assert got == [
        (2, "__future__"),
        (3, "os.path"),
        (3, "json"),
        (4, "typing"),
        (5, "clovm.sim.base"),
        (5, "clovm.sim"),  # not_a_module: an attribute of clovm.sim
        (6, "clovm.sim.base"),
        (7, "clovm.runtime"),
        (8, "clovm.runtime.rpc"),
        (9, ""),
        (11, "clovm.cli.main"),
        (13, "msgspec"),
        (14, "importlib"),
        (15, "clovm.runtime.spawn"),
        (15, "tomllib"),
        (17, "clovm.settings"),
    ], got
    init = tmp_path / "clovm" / "sim" / "__init__.py"  # a package's own __init__: "." is the package
    assert [i.module for i in imports_of(init, tmp_path, "from . import base\nfrom .. import runtime\n")] == [
        "clovm.sim.base",
        "clovm.runtime",
    ]
    assert stdlib("os.path") and stdlib("__future__") and not stdlib("msgspec") and not stdlib("clovm")
    assert within("clovm.core", "clovm.core") and within("clovm.core.x", "clovm.core")
    assert not within("clovm.corex", "clovm.core")
    line8 = next(i for i in imports_of(path, tmp_path, SAMPLE) if i.line == 8)
    assert str(line8) == f"{path}:8: from ..runtime.rpc import call  ->  clovm.runtime.rpc"
