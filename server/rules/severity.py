"""Ticket severities: wire values, queue order, downgrades and customer-facing wording.

Owns the `Severity` enum (its string values are the wire format), the rank used to
order the queue (critical first), the one-step downgrade applied by fair-use rules,
parsing from untrusted input, and the short catalogue of labels and definitions shown
to shop owners in Polish and English (seeds 002 and 004). Pure module: it must not
import starlette, redis, sqlalchemy, asyncio, msgpack or jwt, and performs no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

Lang = Literal["pl", "en"]
LANGS: tuple[Lang, ...] = ("pl", "en")


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    QUESTION = "question"
    SUGGESTION = "suggestion"


# Most urgent first. Kept separate from the enum's declaration order on purpose, so
# reordering members for readability cannot silently reorder the queue.
BY_PRIORITY: tuple[Severity, ...] = (
    Severity.CRITICAL,
    Severity.MAJOR,
    Severity.MINOR,
    Severity.QUESTION,
    Severity.SUGGESTION,
)

_RANK: Mapping[Severity, int] = MappingProxyType({sev: len(BY_PRIORITY) - i for i, sev in enumerate(BY_PRIORITY)})


def rank(sev: Severity) -> int:
    """Higher is more urgent: critical 5 … suggestion 1. Sort the queue by `-rank`."""
    return _RANK[Severity(sev)]


def lower(sev: Severity) -> Severity:
    """One level less urgent; suggestion, already the lowest, stays suggestion."""
    i = BY_PRIORITY.index(Severity(sev))
    return BY_PRIORITY[min(i + 1, len(BY_PRIORITY) - 1)]


def parse_severity(value: object) -> Severity:
    """The Severity named by a wire value; ValueError listing the allowed values."""
    if isinstance(value, Severity):
        return value
    allowed = ", ".join(s.value for s in BY_PRIORITY)
    if not isinstance(value, str):
        raise ValueError(f"severity must be a string, one of: {allowed}; got {type(value).__name__}")
    try:
        return Severity(value)
    except ValueError:
        raise ValueError(f"unknown severity {value!r}; allowed values: {allowed}") from None


_LABELS: Mapping[str, Mapping[Severity, str]] = MappingProxyType(
    {
        "pl": MappingProxyType(
            {
                Severity.CRITICAL: "krytyczne",
                Severity.MAJOR: "poważne",
                Severity.MINOR: "drobne",
                Severity.QUESTION: "pytanie",
                Severity.SUGGESTION: "sugestia",
            }
        ),
        "en": MappingProxyType(
            {
                Severity.CRITICAL: "critical",
                Severity.MAJOR: "major",
                Severity.MINOR: "minor",
                Severity.QUESTION: "question",
                Severity.SUGGESTION: "suggestion",
            }
        ),
    }
)

# Seed 004: a misconfigured integration the shop set up itself is not critical; the
# critical definition says so explicitly, because "nothing works" is the usual panic.
_DEFINITIONS: Mapping[str, Mapping[Severity, str]] = MappingProxyType(
    {
        "pl": MappingProxyType(
            {
                Severity.CRITICAL: (
                    "Błąd systemu, przez który sklep nie może sprzedawać ani obsługiwać zamówień. "
                    "Nie jest krytyczny błąd wynikający z niepoprawnie przeprowadzonej integracji "
                    "skonfigurowanej przez sklep, np. zapisane błędne klucze API w Przelewy24 "
                    "lub innej bramce płatności."
                ),
                Severity.MAJOR: (
                    "Komponent sklepu nie działa, co ma znaczący wpływ na jego działalność, "
                    "a sprzedaż jest nadal możliwa."
                ),
                Severity.MINOR: (
                    "Funkcja działa niezgodnie z dokumentacją, ale istnieje obejście; "
                    "wpływ na działalność jest średni lub mały."
                ),
                Severity.QUESTION: "Pytanie o działanie funkcji lub wyjaśnienie dokumentacji.",
                Severity.SUGGESTION: "Sugestia, pomysł na nową funkcję lub ulepszenie.",
            }
        ),
        "en": MappingProxyType(
            {
                Severity.CRITICAL: (
                    "A system error that stops the shop from selling or handling orders. "
                    "A broken integration the shop configured itself, e.g. wrong API keys "
                    "saved for Przelewy24 or another payment gateway, is not critical."
                ),
                Severity.MAJOR: (
                    "A component of the shop does not work, with a significant impact on "
                    "the business, while selling is still possible."
                ),
                Severity.MINOR: (
                    "A feature works differently from the documentation but a workaround "
                    "exists; the impact on the business is medium or small."
                ),
                Severity.QUESTION: "A question about how a feature works or about the documentation.",
                Severity.SUGGESTION: "A suggestion, an idea for a new feature or an improvement.",
            }
        ),
    }
)


def label(sev: Severity, lang: str = "pl") -> str:
    """Short lower-case name of the severity for sentences and badges."""
    return _LABELS[check_lang(lang)][Severity(sev)]


def definition(sev: Severity, lang: str = "pl") -> str:
    """One or two sentences telling a shop owner when to pick this severity."""
    return _DEFINITIONS[check_lang(lang)][Severity(sev)]


def check_lang(lang: str) -> Lang:
    """`lang` if the catalogue has it, else ValueError naming the supported ones."""
    if lang == "pl":
        return "pl"
    if lang == "en":
        return "en"
    raise ValueError(f"unsupported language {lang!r}; supported: {', '.join(LANGS)}")
