"""Ticket intake: completeness of a new ticket and department routing (pure functions)."""

from __future__ import annotations

import pytest

from server.rules.intake import (
    DEFAULT_DEPARTMENT,
    FACTS,
    Department,
    completeness,
    default_departments,
    department_scores,
    missing_facts_message,
    parse_departments,
    route,
)

DEPARTMENTS = default_departments()

# Title (as customers write them, 2–3 words, any case, with or without Polish
# letters), optional body → department.
ROUTING = [
    ("Faktury", "", "invoicing"),
    ("Nie działa płatność Przelewy24", "", "payments"),
    ("Płatności PayU", "", "payments"),
    ("BLIK odrzucony", "", "payments"),
    ("blad CRC p24", "", "payments"),
    ("Korekta faktury", "", "invoicing"),
    ("KSeF token", "", "invoicing"),
    ("Faktura bez NIP", "", "invoicing"),
    ("Paczkomaty InPost", "", "shipping"),
    ("Kurier DPD etykieta", "", "shipping"),
    ("Koszty dostawy", "", "shipping"),
    ("Status zamówienia", "", "orders"),
    ("Zwrot towaru", "", "orders"),
    ("Kod rabatowy", "", "orders"),
    ("Import CSV", "", "products"),
    ("Warianty produktów", "", "products"),
    ("Stany magazynowe", "", "products"),
    ("Domena i SSL", "", "domains"),
    ("Maile trafiają do spamu", "", "domains"),
    ("Cena abonamentu", "", "sales"),
    ("Koniec okresu próbnego", "", "sales"),
    ("Błąd 500", "", "technical"),
    ("Sklep nie działa", "", "technical"),
    ("Biała strona", "", "technical"),
    ("Pytanie", "Klient nie może zapłacić, płatność przez przelewy24 kończy się błędem", "payments"),
    ("Problem", "Od wczoraj paczkomat nie wyświetla się w koszyku przy wyborze dostawy", "shipping"),
    ("Zgłoszenie", "Coś mi się nie podoba", DEFAULT_DEPARTMENT),
]


def test_routing_accuracy() -> None:
    correct = 0
    wrong = []
    for title, body, expected in ROUTING:
        got = route(title, body, DEPARTMENTS, DEFAULT_DEPARTMENT)
        correct += got == expected
        if got != expected:
            wrong.append((title, expected, got, department_scores(title, body, DEPARTMENTS)))
    accuracy = correct / len(ROUTING)
    print(f"\nrouting: {len(ROUTING)} titles, accuracy {accuracy:.2f}")
    assert accuracy >= 0.9, wrong


def test_faktury_routes_to_invoicing_in_any_spelling() -> None:
    for title in ("Faktury", "FAKTURY", "faktura", "fakturach", "Fakturę"):
        assert route(title, "", DEPARTMENTS, DEFAULT_DEPARTMENT) == "invoicing"


def test_title_outweighs_body() -> None:
    body = "Przy okazji: przelewy24 działa. Chodzi o wysyłkę."
    assert route("Faktura korygująca", body, DEPARTMENTS, "technical") == "invoicing"


def test_ties_go_to_the_first_listed_and_no_hits_to_the_default() -> None:
    deps = (Department("a", "A", ("x",)), Department("b", "B", ("x",)))
    assert route("x", "", deps, "z") == "a"
    assert route("nothing", "", deps, "z") == "z"


def test_parse_departments_format() -> None:
    parsed = parse_departments(" payments : Płatności : płatność, przelewy24 ;invoicing:Faktury:faktura,ksef,vat; ")
    assert parsed == (Department("payments", "Płatności", ("płatność", "przelewy24")),
                      Department("invoicing", "Faktury", ("faktura", "ksef", "vat")))
    example = ("payments:Płatności:płatność,przelewy24,payu,blik;invoicing:Faktury:faktura,ksef,vat;"
               "shipping:Wysyłka:inpost,kurier,paczka;technical:Techniczny:błąd,nie działa,500;"
               "sales:Handel:cena,abonament")
    assert [d.key for d in parse_departments(example)] == ["payments", "invoicing", "shipping", "technical", "sales"]
    assert route("nie działa", "", parse_departments(example), "sales") == "technical"
    assert DEFAULT_DEPARTMENT in {d.key for d in DEPARTMENTS}


@pytest.mark.parametrize(("config", "complaint"), [
    ("", "no departments"),
    ("payments:Płatności", "entry 1"),
    ("payments:Płatności:a:b", "entry 1"),
    ("a:A:x;Bad Key:B:y", "entry 2: key 'Bad Key'"),
    ("a:A:x;a:B:y", "appears twice"),
    ("a::x", "name is empty"),
    ("a:A: , ,", "no keywords"),
    ("a:A:x,!!!", "keyword '!!!'"),
])
def test_parse_departments_names_the_problem(config: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_departments(config)


# ---------------------------------------------------------------- completeness

def test_sklep_sie_popsul_is_too_vague() -> None:
    result = completeness("Sklep się popsuł", "Sklep się popsuł", {}, 0)
    assert result.too_vague
    assert result.score < 20
    assert {"description", "where", "when", "screenshots", "browser"} <= set(result.missing_keys)
    message = missing_facts_message(result)
    assert message is not None
    assert "nie jesteśmy jeszcze w stanie ustalić" in message
    for fact in result.missing:
        assert f"• {fact.label}" in message
    assert "przeglądarki" in message and "zrzuty ekranu" in message and "kiedy" in message


@pytest.mark.parametrize(("title", "body", "vague"), [
    ("Sklep się popsuł", "", True),
    ("Sklep wolno działa", "Sklep wolno działa", True),
    ("Pomocy", "Nic nie działa!!!", True),
    ("Faktury", "", True),
    ("Problem z płatnością", "Przelewy24 nie działa", False),
    ("Sklep się popsuł", "Sklep się popsuł", False),  # with a screenshot (below)
])
def test_too_vague(title: str, body: str, vague: bool) -> None:
    attachments = 1 if body == "Sklep się popsuł" else 0
    assert completeness(title, body, {}, attachments).too_vague is vague


COMPLETE_BODY = (
    "Od dzisiaj rana (20.11.2026, ok. 9:40) klienci nie mogą zapłacić przez Przelewy24 – po wybraniu "
    "banku w koszyku pojawia się komunikat „Błąd autoryzacji”. Dotyczy zamówienia nr 102345, link poniżej. "
    "Sprawdziłem klucz CRC w zakładce Ustawienia > Integracje > Przelewy24 i zapisałem go ponownie, "
    "test połączenia przechodzi. Przeglądarka Chrome 131. Oczekuję, że płatności znowu zaczną działać."
)


def test_complete_ticket_needs_no_message() -> None:
    result = completeness("Płatność Przelewy24 nie działa", COMPLETE_BODY, {}, 2)
    assert result.missing == () and result.score == 100 and not result.too_vague
    assert missing_facts_message(result) is None


def test_context_fields_count_as_facts() -> None:
    context = {"browser": "Firefox", "browser_version": "133", "page_url": "https://sklep.example/admin/orders",
               "occurred_at": "2026-11-20T09:40:00+01:00", "steps_tried": "wylogowanie",
               "expectations": "naprawa", "order_url": "https://sklep.example/admin/orders/55"}
    body = "Po kliknięciu zapisz lista zamówień przeładowuje się bez zmian i nic się nie dzieje dalej."
    result = completeness("Zapis zamówienia", body, context, 1)
    assert result.missing == () and missing_facts_message(result) is None


def test_partly_complete_ticket_asks_for_the_rest() -> None:
    body = "Na stronie produktu nie wyświetlają się zdjęcia w galerii, zamiast nich jest szary prostokąt."
    result = completeness("Zdjęcia produktów", body, {}, 0)
    assert not result.too_vague
    assert set(result.missing_keys) == {"when", "steps", "screenshots", "browser", "expectations"}
    message = missing_facts_message(result)
    assert message is not None and message.startswith("Dziękujemy za zgłoszenie! Żebyśmy")
    assert "• nazwa i wersja przeglądarki" in message
    assert "gdzie występuje problem" not in message


def test_order_link_is_asked_only_when_an_order_is_mentioned() -> None:
    body = "Klient zgłasza, że zamówienie nie dostało statusu opłacone, choć pieniądze wpłynęły na konto."
    assert "order" in completeness("Status zamówienia", body, {}, 0).missing_keys
    with_number = completeness("Status zamówienia", body + " Zamówienie #48213.", {}, 0)
    assert "order" not in with_number.missing_keys
    with_url = completeness("Status zamówienia", body, {"order_url": "https://x.example/o/1"}, 0)
    assert "order" not in with_url.missing_keys
    unrelated = completeness("Zdjęcia produktów", "Na stronie produktu zdjęcia się nie ładują od rana.", {}, 0)
    assert "order" not in unrelated.missing_keys


def test_browser_needs_a_version() -> None:
    body = "W panelu nie da się zapisać ustawień wysyłki, przycisk zapisz nic nie robi od wczoraj."
    assert "browser" in completeness("Ustawienia wysyłki", body + " Używam Chrome.", {}, 0).missing_keys
    assert "browser" not in completeness("Ustawienia wysyłki", body + " Chrome wersja 131.0.6778", {}, 0).missing_keys
    assert "browser" in completeness("Ustawienia wysyłki", body, {"browser": "Safari"}, 0).missing_keys


def test_one_word_title_is_missing_a_title() -> None:
    result = completeness("Faktury", COMPLETE_BODY, {}, 1)
    assert result.missing_keys == ("title",)
    assert missing_facts_message(result) is None  # complete enough to start


def test_questions_are_not_asked_for_failure_facts() -> None:
    body = "Chciałbym wiedzieć, czy da się ustawić darmową dostawę od 200 zł tylko dla paczkomatów w koszyku."
    result = completeness("Darmowa dostawa", body, {}, 0, severity="question")
    assert result.missing == () and missing_facts_message(result) is None
    as_failure = completeness("Darmowa dostawa", body, {}, 0)
    assert {"when", "steps", "screenshots", "browser"} <= set(as_failure.missing_keys)


def test_facts_have_polish_labels_and_weights() -> None:
    assert sum(f.weight for f in FACTS if f.key != "order") == 100
    assert len({f.key for f in FACTS}) == len(FACTS)
    result = completeness("Sklep się popsuł", "", None, 0)
    assert result.public()["missing"][0] == {"key": "description", "label": FACTS[1].label}
