"""The widget stays one small, dependency-free script (STYLE.md, "Widget").

≤ 60 KB unminified, read strictly as 60,000 bytes (not 60 KiB), no module imports or
loaders, no external URLs: everything it needs ships in the file, and it talks only to
the server it was configured with.
"""

from __future__ import annotations

import re
from pathlib import Path

EMBED = Path(__file__).resolve().parents[2] / "widget" / "embed.js"
BUDGET_BYTES = 60_000  # 60 KB read strictly: 60,000 bytes, not 61,440 (60 KiB)


def source() -> str:
    return EMBED.read_text(encoding="utf-8")


def test_within_size_budget() -> None:
    size = len(EMBED.read_bytes())
    assert size <= BUDGET_BYTES, f"embed.js is {size} bytes, over the {BUDGET_BYTES}-byte budget"


def test_no_imports_or_loaders() -> None:
    text = source()
    assert not re.search(r"^\s*import[\s{*(]", text, re.MULTILINE), "no ES module imports"
    assert not re.search(r"\bimport\s*\(", text), "no dynamic import()"
    assert not re.search(r"\brequire\s*\(", text), "no CommonJS require()"
    assert "importScripts" not in text


def test_no_external_urls() -> None:
    hosts = re.findall(r"(?:https?:|wss?:)?//[a-z0-9][a-z0-9.-]*\.[a-z]{2,}", source(), re.IGNORECASE)
    assert hosts == [], f"external URLs in embed.js: {hosts}"


def test_single_global() -> None:
    text = source()
    assigned = set(re.findall(r"\bwindow\.([A-Za-z_$][\w$]*)\s*=(?!=)", text))
    assert assigned == {"Pomoc"}
    assert "globalThis" not in text
