"""The pure time-rule core imports no I/O frameworks and reads no wall clock.

Checked by parsing the source with `ast` rather than importing it, so an import hidden
in a function body or behind `if TYPE_CHECKING:` is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("server/rules/calendar.py", "server/rules/severity.py", "server/rules/sla.py", "server/clock.py")
PURE_MODULES = {p.removesuffix(".py").replace("/", ".") for p in PURE}
FORBIDDEN = {"starlette", "redis", "sqlalchemy", "asyncio", "msgpack", "jwt"}
# clock.py is the one module allowed to read the wall clock.
WALL_CLOCK_ALLOWED = {"server/clock.py"}
# Receiver name → clock-reading attributes (datetime.now(), date.today(), time.time() …).
WALL_CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "perf_counter"},
}


def _tree(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)


def _imported_modules(tree: ast.Module, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative import: resolve against the module's package.
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                if node.module is None:
                    found.update(f"{base}.{alias.name}" for alias in node.names)
                    continue
                found.add(module)
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_no_io_framework(path: str) -> None:
    imported = _imported_modules(_tree(path), "server")
    bad = sorted(m for m in imported if m.split(".")[0] in FORBIDDEN)
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_only_pure_server_modules(path: str) -> None:
    imported = _imported_modules(_tree(path), "server")
    inside = {m for m in imported if m == "server" or m.startswith("server.")}
    assert inside <= PURE_MODULES, f"{path} imports non-pure server modules {sorted(inside - PURE_MODULES)}"


def _clock_reads(tree: ast.Module) -> list[str]:
    reads = [
        f"{ast.unparse(node.func)} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.attr in WALL_CLOCK_CALLS.get(node.func.value.id, set())
    ]
    # The `time` module itself has no business in a pure rule (datetime.time is fine).
    reads += [
        f"import time (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        and any(a.name == "time" for a in node.names)
        or isinstance(node, ast.ImportFrom)
        and node.module == "time"
    ]
    return reads


@pytest.mark.parametrize("path", [p for p in PURE if p not in WALL_CLOCK_ALLOWED])
def test_pure_module_reads_no_wall_clock(path: str) -> None:
    reads = _clock_reads(_tree(path))
    assert not reads, f"{path} reads the clock: {reads}"


@pytest.mark.parametrize("path", PURE)
def test_pure_module_opens_with_a_docstring_naming_what_it_must_not_import(path: str) -> None:
    doc = ast.get_docstring(_tree(path))
    assert doc, f"{path} has no module docstring"
    assert "import" in doc


def test_the_checker_sees_forbidden_imports() -> None:
    source = "import asyncio\nfrom redis.asyncio import Redis\ndef f():\n    import jwt\nfrom . import db\n"
    found = _imported_modules(ast.parse(source), "server")
    assert {"asyncio", "redis.asyncio", "jwt", "server.db"} <= found


def test_the_checker_sees_clock_reads() -> None:
    source = (
        "import time\nfrom datetime import datetime, date\n"
        "a = datetime.now(UTC)\nb = date.today()\nc = time.monotonic()\nd = local.time()\n"
    )
    reads = _clock_reads(ast.parse(source))
    assert len(reads) == 4, reads
    assert not any("local.time" in r for r in reads)
