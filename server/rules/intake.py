"""Ticket intake rules: is a new ticket complete enough, and which department gets it.

`completeness(title, body, context, attachments_count)` checks a new ticket against
what the support policies ask a good ticket to carry (seeds 000, 002, 004): a short
title, a description of what happened and where, when it happened, what was already
tried, screenshots, the browser and its version, what the customer expects, and a
link to the order when the problem concerns an order. It returns a score, the
missing items with Polish labels, and `too_vague` for tickets like "Sklep się
popsuł" that give support nothing to start from. `missing_facts_message` turns that
into the Polish system message that asks for exactly what is missing.

`route(title, body, departments, default)` picks a department by keyword (seed 004:
"a title of 2–3 words routes the ticket"), title words counting more than body
words. Departments come from a configuration string (`parse_departments`, format
below) or `default_departments()`.

Detection is heuristic keyword and pattern matching on normalized Polish text
(`server.rules.polish`); it can be fooled, and it only decides what to ask and where to
queue, never whether a ticket is accepted. Pure module: imports only the standard
library and `server.rules.polish`; it must not import starlette, redis, sqlalchemy or
asyncio, and it reads no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import server.rules.polish as polish

# ----------------------------------------------------------------- completeness


@dataclass(frozen=True, slots=True)
class Fact:
    key: str
    label: str  # Polish, shown to the customer as a bullet
    weight: int
    label_en: str = ""


FACTS: tuple[Fact, ...] = (
    Fact("title", "krótki tytuł (2–3 słowa) mówiący, czego dotyczy zgłoszenie", 10,
         "a short title (2–3 words) saying what the ticket is about"),
    Fact("description", "opis problemu: co dokładnie się dzieje lub co próbujesz zrobić", 25,
         "a description: what exactly happens, or what you are trying to do"),
    Fact("where", "gdzie występuje problem – adres strony albo zakładka panelu (np. Ustawienia > Integracje)", 15,
         "where the problem happens – the page address or the panel tab (e.g. Settings > Integrations)"),
    Fact("when", "kiedy problem wystąpił (data i godzina)", 10,
         "when it happened (date and time)"),
    Fact("steps", "co już sprawdzono lub próbowano zrobić", 10,
         "what you have already checked or tried"),
    Fact("screenshots", "zrzuty ekranu całego obszaru z problemem, nie tylko samego komunikatu", 10,
         "screenshots of the whole area with the problem, not only the message"),
    Fact("browser", "nazwa i wersja przeglądarki (np. Chrome 131)", 10,
         "the browser's name and version (e.g. Chrome 131)"),
    Fact("expectations", "czego oczekujesz – jak powinno działać albo co mamy zrobić", 10,
         "what you expect – how it should work or what we should do"),
    Fact("order", "link do zamówienia albo jego numer", 10,
         "a link to the order or its number"),
)
_FACTS_BY_KEY = {f.key: f for f in FACTS}
# Questions and suggestions are not failures: there is nothing to reproduce.
_NOT_A_FAILURE = frozenset({"question", "suggestion"})
_FAILURE_ONLY = frozenset({"when", "steps", "screenshots", "browser"})

MIN_TITLE_WORDS = 2
MIN_DESCRIPTION_WORDS = 8
COMPLETE_ENOUGH = 80

_URL = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)
# On folded text: 14:30, 14.30 (with a time word), 20.11, 20.11.2026, 2026-11-20, 20/11
_TIME_OF_DAY = re.compile(r"\b(?:[01]?\d|2[0-3]):[0-5]\d\b")
_DATE = re.compile(r"\b\d{1,2}[./-]\d{1,2}(?:[./-]\d{2,4})?\b|\b\d{4}-\d{2}-\d{2}\b")
_TIME_WORDS = frozenset(polish.stem(w) for w in """
    dzis dzisiaj wczoraj przedwczoraj rano wieczorem wieczor noc nocy godzina godz godziny minut minute
    tydzien tygodnia tygodni miesiac miesiaca poniedzialek wtorek sroda srode czwartek piatek sobota sobote
    niedziela niedziele weekend weekendu stycznia lutego marca kwietnia maja czerwca lipca sierpnia wrzesnia
    pazdziernika listopada grudnia wczesniej ostatnio aktualizacji
""".split())
# Places in the admin panel and the shop front a customer may name ("sklep" alone
# is not a place: "the shop broke" says nothing about where).
_PLACE_WORDS = frozenset(polish.stem(w) for w in """
    panel panelu zakladka zakladce zakladki ustawienia ustawieniach sekcja sekcji menu strona stronie strony
    koszyk koszyku checkout kasa kasie podsumowanie produkt produktu produkty karta kategoria kategorii
    zamowienia lista liscie formularz formularzu integracje integracjach szablon szablonie modul module
    aplikacja aplikacji okno oknie przycisk przycisku raport raporcie magazyn magazynie
""".split())
_STEP_PREFIXES = ("probow", "sprobow", "sprawdz", "wyczysc", "czysc", "restart", "zrestart", "przelog",
                  "wylog", "zalogow", "ponown", "zmienil", "zmienial", "testow", "przetestow", "odswiez",
                  "wylacz", "wlacz", "usunal", "usunel", "dodal", "przeczyt", "zaktualiz", "aktualiz",
                  "reinstal", "przeinstal", "robil", "zrobil", "klikal", "kliknal", "kliknel")
_EXPECTATION_PREFIXES = ("oczekuj", "chcialb", "chcial", "chce", "chcemy", "prosz", "powin", "potrzebuj",
                         "zalezy", "liczymy", "licze", "prosimy", "mial", "miala")
# Words in every complaint that name no subject.
_GENERIC_TERMS = frozenset(polish.stem(w) for w in """
    sklep sklepu problem problemu blad bledu bledy pomoc pomocy popsul popsula zepsul psuje dziala dzialac
    wolno nic cos awaria awarii pilne pilnie zgloszenie help niedziala znowu dalej ciagle caly cala
""".split())
_BROWSERS = ("chrome", "chromium", "firefox", "safari", "edge", "opera", "brave", "vivaldi", "yandex")
_BROWSER_VERSION = re.compile(r"\b(?:" + "|".join(_BROWSERS) + r")\b\D{0,20}?\d{2,3}(?:\.\d+)*")
_ORDER_WORDS = ("zamow", "order")
_ORDER_NUMBER = re.compile(r"(?:#|\bnr\.?\s*|\bnumer\s*(?:zamowienia\s*)?)\d{3,}|\b\d{5,}\b")


@dataclass(frozen=True, slots=True)
class Completeness:
    score: int  # 0–100 over the facts that apply to this ticket
    missing: tuple[Fact, ...]
    too_vague: bool

    @property
    def missing_keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.missing)

    def public(self) -> dict[str, Any]:
        return {"score": self.score, "too_vague": self.too_vague,
                "missing": [{"key": f.key, "label": f.label} for f in self.missing]}


def _text(context: Mapping[str, Any], key: str) -> str:
    value = context.get(key)
    return value.strip() if isinstance(value, str) else ""


def completeness(title: str, body: str, context: Mapping[str, Any] | None = None, attachments_count: int = 0,
                 *, severity: str | None = None) -> Completeness:
    """How much of what support needs the new ticket already carries.

    `context` holds the optional fields of `open_ticket` (PROTOCOL.md): browser,
    browser_version, page_url, occurred_at, steps_tried, expectations, order_url.
    With `severity` "question" or "suggestion", the facts that only make sense for
    a failure (when, steps, screenshots, browser) are not asked for.
    """
    ctx = context or {}
    folded_body = polish.fold(body)
    body_terms = polish.terms(body)
    all_tokens = polish.tokens(f"{title} {body}")
    all_terms = set(polish.terms(f"{title} {body}"))
    meaningful_title = [t for t in polish.tokens(title) if t not in polish.STOP_WORDS]

    present: dict[str, bool] = {
        "title": len(meaningful_title) >= MIN_TITLE_WORDS,
        "description": len(body_terms) >= MIN_DESCRIPTION_WORDS,
        "where": bool(_text(ctx, "page_url")) or bool(_URL.search(body)) or bool(all_terms & _PLACE_WORDS),
        "when": bool(_text(ctx, "occurred_at")) or bool(_TIME_OF_DAY.search(folded_body))
        or bool(_DATE.search(folded_body)) or bool(all_terms & _TIME_WORDS),
        "steps": bool(_text(ctx, "steps_tried")) or any(t.startswith(_STEP_PREFIXES) for t in all_tokens),
        "screenshots": attachments_count > 0,
        "browser": (bool(_text(ctx, "browser")) and bool(_text(ctx, "browser_version")))
        or bool(_BROWSER_VERSION.search(folded_body)),
        "expectations": bool(_text(ctx, "expectations"))
        or any(t.startswith(_EXPECTATION_PREFIXES) for t in all_tokens),
    }
    mentions_order = any(t.startswith(_ORDER_WORDS) for t in all_tokens) and severity not in _NOT_A_FAILURE
    if mentions_order:
        order_url = _text(ctx, "order_url")
        present["order"] = bool(order_url) or bool(_ORDER_NUMBER.search(folded_body)) or any(
            any(w in polish.fold(u) for w in ("order", "zamow")) for u in _URL.findall(body))
    if severity in _NOT_A_FAILURE:
        for key in _FAILURE_ONLY:
            present.pop(key, None)

    applicable = [f for f in FACTS if f.key in present]
    total = sum(f.weight for f in applicable)
    got = sum(f.weight for f in applicable if present[f.key])
    missing = tuple(f for f in applicable if not present[f.key])
    # Nothing to start from: no real description, no place, nothing attached and
    # hardly a word naming the subject (seed 000's "Sklep się popsuł", "Sklep wolno
    # działa"); "Przelewy24 nie działa" is short but says what to look at.
    specific = all_terms - _GENERIC_TERMS
    too_vague = (not present["description"] and not present["where"] and attachments_count == 0
                 and len(specific) < 2)
    return Completeness(round(100 * got / total) if total else 100, missing, too_vague)


_ASKING = {
    "pl": ("Dziękujemy za zgłoszenie. Na podstawie tego opisu nie jesteśmy jeszcze w stanie ustalić, "
           "czego dotyczy problem. Napisz, proszę:",
           "Dziękujemy za zgłoszenie! Żebyśmy mogli pomóc szybciej, uzupełnij, proszę:",
           "Im więcej szczegółów w jednej wiadomości, tym sprawniej rozwiążemy sprawę."),
    "en": ("Thank you for the ticket. From this description we cannot tell yet what the problem is. "
           "Please write:",
           "Thank you for the ticket! To help you faster, please add:",
           "The more details in one message, the sooner we solve it."),
}


def missing_facts_message(result: Completeness, lang: str = "pl") -> str | None:
    """The system message asking for the missing facts (Polish, or English), or
    None when the ticket is complete enough to start work."""
    if not result.too_vague and (result.score >= COMPLETE_ENOUGH or not result.missing):
        return None
    vague, incomplete, closing = _ASKING["en" if lang == "en" else "pl"]
    opening = vague if result.too_vague else incomplete
    bullets = "\n".join(f"• {fact.label_en if lang == 'en' else fact.label}" for fact in result.missing)
    return f"{opening}\n{bullets}\n{closing}"


# ---------------------------------------------------------------------- routing

# The configuration format (POMOC_DEPARTMENTS):
#   entries separated by ";", each "key:Name:keyword,keyword,…"
#   key      lowercase letters, digits, "_" or "-", unique, starting with a letter
#   Name     display name, any text without ":" or ";"
#   keywords comma-separated words or phrases, at least one; matched after
#            lowercasing, folding diacritics and stemming, so "płatność" also matches
#            "płatności" and "platnosci"; a phrase ("nie działa") matches its words
#            in order.
# Whitespace around every part is ignored; empty entries (a trailing ";") are skipped.
DEFAULT_DEPARTMENTS = (
    "payments:Płatności:płatność,płatności online,przelewy24,p24,payu,blik,bramka płatnicza,crc,przelew,"
    "karta płatnicza,zwrot płatności;"
    "invoicing:Faktury:faktura,fakturowanie,ksef,vat,nip,korekta,paragon,jpk;"
    "shipping:Wysyłka:wysyłka,inpost,paczkomat,kurier,paczka,przesyłka,dpd,dhl,dostawa,etykieta,list przewozowy;"
    "orders:Zamówienia:zamówienie,status zamówienia,zwrot,reklamacja,koszyk,kod rabatowy,rabat,kupon;"
    "products:Produkty:produkt,import,eksport,csv,kategoria,wariant,magazyn,stan magazynowy,zdjęcie produktu;"
    "domains:Domeny i poczta:domena,dns,ssl,certyfikat,https,poczta,mail,smtp,spam;"
    "sales:Handel:abonament,cena,pakiet,okres próbny,trial,umowa,rezygnacja,opłata,oferta;"
    "technical:Techniczny:błąd,nie działa,500,404,awaria,wolno,nie ładuje,zawiesza,biała strona,"
    "przeglądarka,szablon,api,integracja"
)
DEFAULT_DEPARTMENT = "technical"
TITLE_WEIGHT = 3
_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Department:
    key: str
    name: str
    keywords: tuple[str, ...]

    def phrases(self) -> tuple[tuple[str, ...], ...]:
        """Keywords as stemmed term sequences (stop words kept: "nie działa")."""
        return tuple(tuple(polish.terms(k, keep_stop_words=True)) for k in self.keywords)


def parse_departments(config: str) -> tuple[Department, ...]:
    """Departments from the configuration string (format above); ValueError names
    the entry and the problem."""
    departments: list[Department] = []
    seen: set[str] = set()
    for number, entry in enumerate(config.split(";"), start=1):
        if not entry.strip():
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"department entry {number} ({entry.strip()[:40]!r}) must be key:Name:keywords")
        key, name, words = (p.strip() for p in parts)
        if not _KEY.match(key):
            raise ValueError(f"department entry {number}: key {key!r} must be lowercase letters, digits, _ or -")
        if key in seen:
            raise ValueError(f"department entry {number}: key {key!r} appears twice")
        if not name:
            raise ValueError(f"department entry {number} ({key}): the name is empty")
        keywords = tuple(w.strip() for w in words.split(",") if w.strip())
        if not keywords:
            raise ValueError(f"department entry {number} ({key}): no keywords")
        for keyword in keywords:
            if not polish.terms(keyword, keep_stop_words=True):
                raise ValueError(f"department entry {number} ({key}): keyword {keyword!r} has no letters or digits")
        seen.add(key)
        departments.append(Department(key, name, keywords))
    if not departments:
        raise ValueError("no departments configured")
    return tuple(departments)


def default_departments() -> tuple[Department, ...]:
    return parse_departments(DEFAULT_DEPARTMENTS)


def department_scores(title: str, body: str, departments: Sequence[Department]) -> dict[str, int]:
    """Keyword hits per department: each occurrence in the title counts TITLE_WEIGHT,
    in the body 1."""
    title_terms = polish.terms(title, keep_stop_words=True)
    body_terms = polish.terms(body, keep_stop_words=True)
    scores: dict[str, int] = {}
    for department in departments:
        score = 0
        for phrase in department.phrases():
            score += TITLE_WEIGHT * sum(1 for _ in polish.find_phrase(title_terms, list(phrase)))
            score += sum(1 for _ in polish.find_phrase(body_terms, list(phrase)))
        scores[department.key] = score
    return scores


def route(title: str, body: str, departments: Sequence[Department], default: str) -> str:
    """The key of the department with the most keyword hits; ties go to the
    department listed first, no hits to `default`."""
    scores = department_scores(title, body, departments)
    best = max(departments, key=lambda d: scores[d.key], default=None)
    if best is None or scores[best.key] == 0:
        return default
    return best.key
