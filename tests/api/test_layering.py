"""The layering of clovm's front ends (pcs style): cli -> api -> runtime / core, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

SRC = Path(__file__).resolve().parents[2] / "src" / "clovm"


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    pkg = ["clovm", *path.relative_to(SRC).parent.parts]
    out: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = pkg[: len(pkg) - n.level + 1] if n.level else []
            mod = ".".join([*base, n.module] if n.module else base)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in n.names)
    return out


def test_api_never_imports_cli() -> None:
    bad = {f.name: sorted(m for m in _imports(f) if m.startswith("clovm.cli")) for f in (SRC / "api").glob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_admin_commands_go_through_the_api() -> None:
    mods = _imports(SRC / "cli" / "admin.py")
    assert not {m for m in mods if m.startswith(("clovm.runtime.rpc", "clovm.runtime.migrate_env"))}
    assert "clovm.api.commands" in mods


@pytest.mark.parametrize(
    "path",
    sorted((SRC / "api").glob("*.py")) + sorted((SRC / "cli").glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_each_module_has_one_job_said_in_its_docstring_and_is_not_too_long(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{path.name} opens with no docstring"
    assert text.count("\n") <= 600, f"{path.name}: {text.count(chr(10))} lines"
