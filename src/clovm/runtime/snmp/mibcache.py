"""Start-up cost of pysnmp: its MIB modules loaded from the bytecode cache instead of compiled.

Every SnmpEngine (one per xscfd, one per guest node's SNMP client) loads ~17 MIB modules, which
pysnmp's builder reads as .py files and compiles twice (once in MibSource.read, once more in
runpy.run_path, which it calls instead of executing the code it read unless python runs with
-O): ~0.1 s of CPU per engine, with ~25 of them starting at once in a 16-guest datacenter.
The same code objects come from the __pycache__ bytecode pip wrote when it installed pysnmp,
validated against the source as the import system does (SourceFileLoader.get_code, which
compiles the source if the cache is stale or missing). Only where the source file is plain
(no legacy ``NAME.pyc`` beside it, which pysnmp would prefer); anything else goes to pysnmp.

Importing this module installs the cache (once: the agent and the client both import it before
they create an engine).
"""

from __future__ import annotations

import importlib.machinery
import os
import runpy
from typing import Any, cast

from pysnmp.smi import builder as _mib_builder


def _mib_code(path: str) -> Any:
    return importlib.machinery.SourceFileLoader("<mib>", path).get_code("<mib>")


class _CachedRunpy:
    """``runpy`` as pysnmp's builder uses it: ``run_path`` of a MIB file, with cached bytecode."""

    @staticmethod
    def run_path(
        path_name: str, init_globals: dict[str, Any] | None = None, run_name: str | None = None
    ) -> dict[str, Any]:
        run_module_code = getattr(runpy, "_run_module_code", None)
        if run_module_code is None or not str(path_name).endswith(".py"):
            return runpy.run_path(path_name, init_globals, run_name)
        # what runpy.run_path does for a path that is not a sys.path entry, minus the compile
        return cast(
            "dict[str, Any]",
            run_module_code(
                _mib_code(path_name), init_globals, run_name or "<run_path>", pkg_name="", script_name=path_name
            ),
        )


def _install_mib_bytecode_cache() -> None:
    source = getattr(_mib_builder, "DirMibSource", None)
    if source is None or getattr(_mib_builder, "runpy", None) is not runpy:
        return  # not the pysnmp this was written for (or already installed): leave it alone
    read = source.read

    def cached_read(self: Any, f: str) -> tuple[Any, str]:
        base = os.path.join(self._srcName, f)
        if os.path.isfile(base + ".py") and not os.path.exists(base + ".pyc"):
            return _mib_code(base + ".py"), ".py"
        return cast("tuple[Any, str]", read(self, f))

    source.read = cached_read
    _mib_builder.runpy = _CachedRunpy


_install_mib_bytecode_cache()
