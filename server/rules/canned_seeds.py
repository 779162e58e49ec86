"""The canned replies a new deployment starts with (migration 0011 stores them once).

Written in the tone of the support policies the product follows: asking for the facts
a ticket needs (seeds 000, 002, 004), explaining that wrong Przelewy24 keys are the
shop's configuration and not a system error (004), the working hours and reaction
times (001, 002), waiting on the customer (002), one problem per ticket (004), and a
closing question. Agents change or delete them like any other reply; a later edit of
this file does not touch a database that has them already.

Pure module: standard library only; it must not import starlette, redis, sqlalchemy,
asyncio or jwt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeedReply:
    shortcut: str
    title: str
    body: str
    department: str | None = None  # None: shared by every department
    articles: tuple[str, ...] = ()


SEED_AUTHOR = "pomoc"

SEED_REPLIES: tuple[SeedReply, ...] = (
    SeedReply(
        shortcut="dane",
        title="Prośba o szczegóły zgłoszenia",
        body=(
            "Dzień dobry {imie},\n\n"
            "dziękuję za zgłoszenie. Żebyśmy mogli sprawdzić problem bez dopytywania, prześlij proszę "
            "w jednej wiadomości:\n"
            "1. co dokładnie się stało i w którym miejscu sklepu lub panelu (adres strony albo zakładka),\n"
            "2. kiedy problem wystąpił po raz pierwszy,\n"
            "3. kroki, które do niego prowadzą, i to, co już sprawdzałeś,\n"
            "4. czego oczekiwałeś w tym miejscu,\n"
            "5. nazwę i wersję przeglądarki (np. Chrome 131),\n"
            "6. pełne zrzuty ekranu (całego obszaru, nie tylko komunikatu) i link do zamówienia, "
            "jeżeli sprawa go dotyczy.\n\n"
            "Im więcej informacji, tym szybciej znajdziemy rozwiązanie."
        ),
        articles=("jak-zglosic-problem",),
    ),
    SeedReply(
        shortcut="przelewy24",
        title="Przelewy24: to konfiguracja kluczy, nie błąd systemu",
        department="payments",
        body=(
            "Dzień dobry {imie},\n\n"
            "sprawdziliśmy płatności w sklepie {sklep}: to jest konfiguracja kluczy Przelewy24 w Twoim "
            "sklepie, a nie błąd systemu. Bramka odrzuca transakcje, bo zapisane dane integracji nie "
            "zgadzają się z danymi w panelu Przelewy24.\n\n"
            "Jak to poprawić:\n"
            "1. W panelu Przelewy24 (zakładki „Moje dane” i „Dane API”) skopiuj ID sprzedawcy, ID sklepu, "
            "klucz CRC i klucz do raportów — z konta produkcyjnego, nie z sandboxa.\n"
            "2. W panelu sklepu wejdź w Ustawienia > Integracje > Przelewy24, wklej dane i kliknij „Zapisz”.\n"
            "3. Użyj przycisku „Testuj połączenie” — wskazówki pod formularzem pokażą, które pole jest błędne.\n"
            "4. Jeżeli włączony jest tryb testowy, wyłącz go po testach.\n\n"
            "Po poprawieniu kluczy płatności zaczynają działać od razu. Gdyby mimo to transakcje nadal "
            "były odrzucane, odpisz w tym zgłoszeniu ({zgloszenie}) i dołącz zrzut ekranu komunikatu."
        ),
        articles=("platnosci-przelewy24",),
    ),
    SeedReply(
        shortcut="godziny",
        title="Godziny pracy i czas reakcji",
        body=(
            "Dzień dobry {imie},\n\n"
            "dział wsparcia pracuje od poniedziałku do piątku w godzinach 9:00–17:00, z wyjątkiem dni "
            "ustawowo wolnych od pracy. Zgłoszenia wysłane przed 16:00 zwykle dostają odpowiedź tego "
            "samego dnia. W nocy, w weekendy i święta obsługujemy tylko zgłoszenia krytyczne — błędy, "
            "przez które sklep nie może sprzedawać ani obsługiwać zamówień; pozostałe czekają w kolejce "
            "na najbliższy dzień roboczy.\n\n"
            "Czas reakcji liczymy w godzinach pracy: awaria sklepu do 16 godz., niedziałający moduł do "
            "24 godz., działanie niezgodne z dokumentacją do 4 dni, pytanie do 7 dni, sugestia do 14 dni."
        ),
        articles=("jak-zglosic-problem",),
    ),
    SeedReply(
        shortcut="czekam",
        title="Czekamy na odpowiedź klienta",
        body=(
            "Dzień dobry {imie},\n\n"
            "czekamy na informacje, o które prosiliśmy w zgłoszeniu {zgloszenie}. Jeżeli przez dwa "
            "tygodnie nie dostaniemy odpowiedzi, dwa razy przypomnimy się wiadomością, a potem zamkniemy "
            "zgłoszenie jako rozwiązane. Zawsze możesz je wznowić, odpisując tutaj."
        ),
    ),
    SeedReply(
        shortcut="nowe",
        title="Jeden problem — jedno zgłoszenie",
        body=(
            "Dzień dobry {imie},\n\n"
            "to pytanie dotyczy innej sprawy niż zgłoszenie {zgloszenie}. Załóż proszę dla niego nowe "
            "zgłoszenie (przycisk POMOC na górnej belce panelu) z tytułem w 2–3 słowach — trafi wtedy "
            "do właściwego działu i żaden wątek nam nie ucieknie."
        ),
    ),
    SeedReply(
        shortcut="krytyczne",
        title="Zgłoszenie nie jest krytyczne",
        body=(
            "Dzień dobry {imie},\n\n"
            "rozumiemy, że sprawa jest pilna. Zgłoszenia krytyczne to błędy systemu, przez które sklep "
            "nie może sprzedawać ani obsługiwać zamówień. Ten problem wynika z ustawień sklepu {sklep}, "
            "dlatego obsłużymy go w zwykłym trybie, w godzinach pracy działu wsparcia. Wiele odpowiedzi "
            "znajdziesz od razu we wskazówkach w panelu administracyjnym i w Centrum Pomocy."
        ),
    ),
    SeedReply(
        shortcut="koniec",
        title="Czy mogę jeszcze w czymś pomóc?",
        body=(
            "Cieszę się, że wszystko działa. Czy mogę jeszcze w czymś pomóc?\n\n"
            "Jeżeli nie, zamkniemy zgłoszenie {zgloszenie} jako rozwiązane — przez 2–3 miesiące "
            "będzie jeszcze widoczne na liście zgłoszeń. Z kolejnym pytaniem zapraszamy w nowym zgłoszeniu.\n\n"
            "Pozdrawiam serdecznie"
        ),
    ),
)
