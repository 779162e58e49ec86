"""One import direction through the code (DESIGN.md, "Layout").

`web/`, `worker/` → `chat/` → `protocol/`, `store/`, `realtime/` → `rules/` → the kernel.
Every module under `server/` is found by walking the folders (a module in no known
place fails), its imports are read with `ast` (an import inside a function or behind
`if TYPE_CHECKING:` counts too), and each must point down the direction: to a lower
layer, or within its own folder. `protocol/`, `store/` and `realtime/` are peers that
never import each other, and `rules/` and `protocol/` import no I/O library. The
checker itself is tested on synthetic sources, so a broken walker cannot pass by
finding nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"

# Folder → (rank, layer). Higher ranks may import lower ones; a folder may import itself.
FOLDERS = {"rules": 1, "protocol": 2, "store": 2, "realtime": 2, "chat": 3, "web": 4, "worker": 4}
# Modules at the top of server/: the kernel, the entry point, and the three that
# the design card names, each in its layer.
TOP = {"__init__": ("kernel", 0), "settings": ("kernel", 0), "clock": ("kernel", 0), "errors": ("kernel", 0),
       "logs": ("kernel", 0), "principal": ("kernel", 0), "metrics": ("kernel", 0),
       "batching": ("kernel", 0),
       "presence": ("realtime", 2), "threads": ("chat", 3),
       "ws": ("web", 4), "__main__": ("main", 5)}
PURE_LAYERS = {"rules", "protocol"}
IO_LIBRARIES = {"starlette", "redis", "sqlalchemy", "asyncio", "jwt", "asyncpg", "aiosqlite", "httpx", "uvicorn",
                "websockets", "fakeredis", "anyio", "aiosmtplib"}


def layer_of(module: str) -> tuple[str, int]:
    """('chat', 3) for 'server.chat.hello'; KeyError for a module in no known place."""
    parts = module.split(".")
    if parts[0] != "server":
        raise KeyError(module)
    if len(parts) == 1:
        return TOP["__init__"]
    if parts[1] in FOLDERS:
        return parts[1], FOLDERS[parts[1]]
    if len(parts) == 2:
        return TOP[parts[1]]
    raise KeyError(module)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SERVER.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(source: str, module: str) -> set[str]:
    """Every module `source` (the module `module`) imports, resolved to full names."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base in ("server", *(f"server.{f}" for f in FOLDERS)):
                # `from server.protocol import frames` imports server.protocol.frames.
                found.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.add(base)
    return found


def violations(module: str, imported: set[str]) -> list[str]:
    name, rank = layer_of(module)
    bad = []
    for target in sorted(imported):
        top = target.split(".")[0]
        if top != "server":
            if name in PURE_LAYERS and top in IO_LIBRARIES:
                bad.append(f"{module} imports the I/O library {target} ({name}/ is sans-I/O)")
            continue
        try:
            target_name, target_rank = layer_of(target)
        except KeyError:
            bad.append(f"{module} imports {target}, which is in no known layer")
            continue
        if target_name == name or name == "main":
            continue
        if target_rank >= rank:
            bad.append(f"{module} ({name}/) imports {target} ({target_name}/): against the direction")
    return bad


ALL = modules()


def test_every_module_has_a_place() -> None:
    unplaced = []
    for module in ALL:
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"modules in no layer: {unplaced}"
    assert len(ALL) > 40, "the walker found too few modules"


@pytest.mark.parametrize("module", sorted(ALL))
def test_imports_follow_the_direction(module: str) -> None:
    bad = violations(module, imports(ALL[module].read_text(encoding="utf-8"), module))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in ALL if layer_of(m)[0] in PURE_LAYERS))
def test_pure_modules_say_what_they_must_not_import(module: str) -> None:
    doc = ast.get_docstring(ast.parse(ALL[module].read_text(encoding="utf-8")))
    if module.endswith("__init__") or module in ("server.rules", "server.protocol"):
        return
    assert doc and "import" in doc, f"{module}'s docstring does not say what it must not import"


# --------------------------------------------------------- the checker itself
@pytest.mark.parametrize(("module", "source", "expected"), [
    ("server.rules.sla", "import sqlalchemy\n", "I/O library sqlalchemy"),
    ("server.rules.sla", "def f():\n    from redis.asyncio import Redis\n", "I/O library redis.asyncio"),
    ("server.protocol.session", "import asyncio\n", "I/O library asyncio"),
    ("server.store.tickets", "from server.realtime.keys import Keys\n", "against the direction"),
    ("server.realtime.bus", "from server.store import models\n", "against the direction"),
    ("server.realtime.bus", "from ..store.db import create_engine\n", "against the direction"),
    ("server.rules.tickets", "from server.chat.adapters import Adapters\n", "against the direction"),
    ("server.chat.hello", "from server.web.tokens import authenticate\n", "against the direction"),
    ("server.web.app", "from server.worker.jobs import Jobs\n", "against the direction"),
    ("server.settings", "from server.rules.policy import SupportPolicy\n", "against the direction"),
    ("server.chat.hello", "import server.nowhere\n", "no known layer"),
])
def test_the_checker_sees_imports_against_the_direction(module: str, source: str, expected: str) -> None:
    bad = violations(module, imports(source, module))
    assert any(expected in b for b in bad), bad


@pytest.mark.parametrize(("module", "source"), [
    ("server.chat.hello", "from server.store.tickets import TicketStore\nfrom server.rules import tickets\n"),
    ("server.threads", "from server.chat.connection import Connection\n"),
    ("server.ws", "from server.chat import dispatch\nfrom server.web.tokens import authenticate\n"),
    ("server.presence", "from server.realtime.keys import Keys\n"),
    ("server.rules.tickets", "from . import records\nfrom server.errors import NotFound\n"),
    ("server.__main__", "from server.worker.jobs import Jobs\nfrom server.web.app import create_app\n"),
])
def test_the_checker_lets_the_direction_through(module: str, source: str) -> None:
    assert violations(module, imports(source, module)) == []


CLOCK_READS = {"datetime": {"now", "utcnow", "today"}, "date": {"today"},
               "time": {"time", "time_ns", "monotonic", "perf_counter"}}


def clock_reads(source: str) -> list[str]:
    return [f"{ast.unparse(node.func)} (line {node.lineno})" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.attr in CLOCK_READS.get(node.func.value.id, ())]


@pytest.mark.parametrize("module", sorted(m for m in ALL if layer_of(m)[0] in PURE_LAYERS))
def test_pure_modules_read_no_clock(module: str) -> None:
    reads = clock_reads(ALL[module].read_text(encoding="utf-8"))
    assert not reads, f"{module} reads the clock (take `now` as an argument): {reads}"


def test_the_checker_sees_clock_reads() -> None:
    assert len(clock_reads("a = datetime.now(UTC)\nb = time.monotonic()\nc = local.time()\n")) == 2
