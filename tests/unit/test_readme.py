"""The README documents every environment variable the server reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def variables_read() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "server").rglob("*.py"):
        names.update(re.findall(r'"((?:POMOC_[A-Z0-9_]+)|DATABASE_URL|REDIS_URL)"', path.read_text(encoding="utf-8")))
    return names


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = variables_read()
    assert len(found) > 40
    missing = sorted(n for n in found if f"`{n}`" not in readme)
    assert not missing, f"README does not document {missing}"


def test_the_readme_documents_the_probes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "/readyz" in readme and "/healthz" in readme
