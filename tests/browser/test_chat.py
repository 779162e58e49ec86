"""The widget and the agent console against a real server: a ticket's whole round trip,
reconnecting through a server restart, history paging, resolving and closing.

Messages are counted by their `data-seq` elements, so a replayed or re-sent message
that showed up twice would fail the count, and a lost one would never reach it.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import websockets
from playwright.async_api import Page, Route, expect
from websockets.typing import Subprotocol

from tests.browser.conftest import OpenTab, Servers
from tests.browser.harness import HostSite, PomocServer, screenshot_path
from tests.filesamples import image
from tests.wsclient import Client

pytestmark = pytest.mark.browser

ORANGE = "rgb(245, 124, 0)"


async def seqs(page: Page, scope: str = "") -> list[int]:
    return await page.locator(f"{scope} .msg[data-seq]").evaluate_all("els => els.map(e => Number(e.dataset.seq))")


async def open_ticket_in_widget(page: Page, title: str, body: str) -> None:
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill(title)
    await page.get_by_label("Opis problemu").fill(body)
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(2)  # the description and the acknowledgment


async def test_ticket_round_trip_between_widget_and_console(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    launcher = page.locator("#pomoc-slot").get_by_role("button", name="POMOC")
    await expect(launcher).to_be_visible()
    await expect(page.locator(".badge")).to_be_hidden()
    await launcher.click()
    await expect(launcher).to_have_attribute("aria-expanded", "true")

    # The new-ticket form: severity definitions, optional fields, automatic context shown before sending.
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill("Płatności nie działają")
    # A ticket complete enough (intake completeness ≥ 80) gets no extra "please add…" message.
    await page.get_by_label("Opis problemu").fill(
        "Od rana klienci nie mogą zapłacić BLIKiem przy kasie, zamówienia wiszą jako nieopłacone w panelu sklepu.")
    severity = page.get_by_label("Priorytet")
    await severity.select_option("critical")
    await expect(page.locator("#pomoc-def")).to_contain_text("nie może sprzedawać")
    await expect(page.locator("#pomoc-def")).to_contain_text("Przelewy24")
    await severity.select_option("major")
    await expect(page.locator("#pomoc-def")).to_contain_text("sprzedaż jest nadal możliwa")
    await page.get_by_text("Dodatkowe informacje").click()
    await page.get_by_label("Co już próbowano?").fill("Wylogowanie i ponowne zapisanie ustawień płatności.")
    await page.get_by_label("Czego oczekujesz?").fill("Przywrócenia płatności BLIK.")
    await page.get_by_label("Link do zamówienia").fill("https://sklep-demo.example/admin/orders/10482")
    await expect(page.locator(".auto-browser")).to_contain_text("Chrome")
    await expect(page.locator(".auto-page")).to_contain_text("/demo")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(2)
    await expect(page.locator(".msg.system[data-seq='2']")).to_contain_text("zgłoszenie")  # the acknowledgment
    # Nobody from support is connected yet: the widget promises the SLA deadline.
    await expect(page.locator(".status")).to_contain_text("Odpowiemy najpóźniej do")

    # The console, in a second browser context, sees the ticket and its context.
    agent = await open_tab(1440, 860)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await expect(console.locator("#conn")).to_have_text("Połączono")
    # An agent came online: the status bar says so, and still the acknowledgment's deadline, in its words.
    ack = await page.locator(".msg.system[data-seq='2']").inner_text()
    due = re.search(r"Oczekiwany czas reakcji: (.+)\.\s*$", ack)
    assert due, ack
    live = f"Konsultant jest teraz dostępny. Odpowiemy najpóźniej {due[1]}."
    await expect(page.locator(".status")).to_contain_text(live)
    item = console.locator(".ticket", has_text="Płatności nie działają")
    await expect(item).to_have_class(re.compile(r"\bunread\b"))
    await expect(item.locator(".trial")).to_have_text("TRIAL")
    await item.click()
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(2)
    side = console.locator("#customer")
    await expect(side).to_contain_text("Sklep Demo")
    await expect(side).to_contain_text("Chrome")
    await expect(side).to_contain_text("/demo")
    await expect(side).to_contain_text("Wylogowanie i ponowne zapisanie")
    await expect(side).to_contain_text("orders/10482")
    await expect(side.locator(".plan-trial")).to_have_text("TRIAL")
    await expect(side.locator("[class^=online-]")).to_have_text("tak, teraz")  # the widget is connected
    await expect(item.locator(".pill")).to_have_count(0)  # read once the chat was open

    # The customer leaves the chat; the agent's reply raises the badge and turns the ticket orange.
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    await console.locator("#reply").fill("Dzień dobry, sprawdzamy konfigurację BLIK w Państwa sklepie.")
    await console.keyboard.press("Enter")
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(3)
    await expect(page.locator(".badge")).to_be_visible()
    await expect(page.locator(".badge")).to_have_text("!")
    await expect(launcher).to_have_attribute("aria-label", re.compile("nieprzeczytane"))
    ticket = page.locator("button.ticket", has_text="Płatności nie działają")
    await expect(ticket).to_have_class(re.compile(r"\bunread\b"))
    assert await ticket.evaluate("el => getComputedStyle(el).borderLeftColor") == ORANGE
    if path := screenshot_path("widget-badge.png"):
        await page.screenshot(path=str(path))

    # Opening the chat reads it: the badge clears and the ticket is no longer orange.
    await ticket.click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(3)
    await expect(page.locator(".msg.theirs")).to_contain_text("sprawdzamy konfigurację")
    # Support has reacted and is here: no first-reaction deadline any more.
    await expect(page.locator(".status span")).to_have_text("Konsultant jest teraz dostępny.")
    await expect(page.locator(".badge")).to_be_hidden()
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    await expect(page.locator("button.ticket.unread")).to_have_count(0)
    await page.locator("button.ticket", has_text="Płatności nie działają").click()

    # Typing indicators both ways, then the customer's answer reaches the console.
    await page.get_by_label("Twoja wiadomość").fill("Sprawdziłem klucze")
    await expect(console.locator("#typing")).to_contain_text("pisze…")
    await page.get_by_label("Twoja wiadomość").fill(
        "Klucze API w panelu wyglądają dobrze, błąd pojawia się przy płatności.")
    await page.get_by_role("button", name="Wyślij", exact=True).click()
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(4)
    await console.locator("#reply").fill("Widzimy problem po stronie operatora")
    await expect(page.locator(".typing")).to_contain_text("pisze…")
    if path := screenshot_path("widget-chat.png"):
        await page.screenshot(path=str(path))
    if path := screenshot_path("console.png"):
        await console.screenshot(path=str(path))
    await console.keyboard.press("Enter")
    await expect(page.locator(".msg[data-seq]")).to_have_count(5)
    assert await seqs(page) == [1, 2, 3, 4, 5]
    assert await seqs(console, "#log") == [1, 2, 3, 4, 5]
    assert customer.errors == [] and agent.errors == []


async def test_server_restart_loses_and_doubles_nothing(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await open_ticket_in_widget(page, "Brak faktur", "Faktury nie generują się automatycznie po opłaceniu "
                                                     "zamówienia przez klienta w panelu sprzedaży.")
    agent = await open_tab(1440, 860)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await console.locator(".ticket", has_text="Brak faktur").click()
    await console.locator("#reply").fill("Proszę podać numer zamówienia.")
    await console.keyboard.press("Enter")
    await expect(page.locator(".msg[data-seq]")).to_have_count(3)

    await pomoc.stop()
    await expect(page.locator(".banner")).to_contain_text("Brak połączenia", timeout=20_000)
    await expect(console.locator("#conn")).to_contain_text("Brak połączenia", timeout=20_000)
    # The customer also loses the network, so it will come back after the agent has written.
    await customer.context.set_offline(True)
    # Written while offline: shown at once as pending, kept until the server acknowledges it.
    box = page.get_by_label("Twoja wiadomość")
    await box.fill("Zamówienie #10482, wysłane bez połączenia.")
    await box.press("Enter")
    await expect(page.locator(".msg.pending")).to_have_count(1)
    await box.fill("Szkic, którego nie wysyłam")
    await console.locator("#reply").fill("Szkic agenta")

    await pomoc.start()
    await expect(console.locator("#conn")).to_have_text("Połączono", timeout=30_000)
    await expect(console.locator("#reply")).to_have_value("Szkic agenta")
    await console.locator("#reply").fill("Czy problem dotyczy wszystkich zamówień?")
    await console.keyboard.press("Enter")
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(4)
    await expect(page.locator(".banner")).to_be_visible()

    # Back online: resume replays what the agent wrote meanwhile, the pending send goes out once.
    await customer.context.set_offline(False)
    await expect(page.locator(".banner")).to_be_hidden(timeout=30_000)
    await expect(page.locator(".msg.pending")).to_have_count(0)
    await expect(page.locator(".msg[data-seq]")).to_have_count(5)
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(5)
    await expect(page.locator(".msg[data-seq='4']")).to_contain_text("wszystkich zamówień")
    await expect(console.locator("#log .msg[data-seq='5']")).to_contain_text("wysłane bez połączenia")
    await expect(box).to_have_value("Szkic, którego nie wysyłam")

    # After all that both sides still talk, each message once.
    await console.locator("#reply").fill("Dziękujemy, faktura jest już wygenerowana.")
    await console.keyboard.press("Enter")
    await expect(page.locator(".msg[data-seq]")).to_have_count(6)
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(6)
    assert await seqs(page) == [1, 2, 3, 4, 5, 6]
    assert await seqs(console, "#log") == [1, 2, 3, 4, 5, 6]
    assert customer.errors == [] and agent.errors == []


async def test_history_pages_back_without_duplicates(pomoc: PomocServer, host_site: HostSite,
                                                     open_tab: OpenTab) -> None:
    token = pomoc.token("customer", "owner-7", shop="shop-7", shop_name="Sklep Siedem")
    ws_url = pomoc.base.replace("http", "ws") + "/ws"
    async with websockets.connect(ws_url, subprotocols=[Subprotocol("pomoc.v1.json")]) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "open_ticket", "title": "Długi wątek", "body": "Start",
                                  "severity": "question", "client_id": "open-1", "ref": "o"}))
        ticket_id = None
        while ticket_id is None:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ticket":
                ticket_id = frame["ticket"]["id"]
        # One at a time, honouring the server's rate limit (retry_after) as a real client would.
        last_seq = 0
        for i in range(40):
            frame = {"type": "send", "ticket": ticket_id, "body": f"Wiadomość {i + 1}", "client_id": f"m{i}"}
            await ws.send(json.dumps(frame))
            while True:
                answer = json.loads(await ws.recv())
                if answer["type"] == "ack" and answer["client_id"] == f"m{i}":
                    last_seq = answer["seq"]
                    break
                if answer["type"] == "error" and answer["code"] == "rate_limited":
                    await asyncio.sleep(answer.get("retry_after", 0.5))
                    await ws.send(json.dumps(frame))

    customer = await open_tab()
    page = customer.page
    host_site.pages["/panel"] = HOST_PAGE.format(server=pomoc.base, token=token)
    await page.goto(host_site.base + "/panel")
    await page.get_by_role("button", name="POMOC").click()
    await page.locator("button.ticket", has_text="Długi wątek").click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(30)
    await page.get_by_role("button", name="Pokaż wcześniejsze wiadomości").click()
    # 40 messages after the opening ones (the description and the server's system messages).
    await expect(page.locator(".msg[data-seq]")).to_have_count(last_seq)
    await expect(page.get_by_role("button", name="Pokaż wcześniejsze wiadomości")).to_be_hidden()
    assert await seqs(page) == list(range(1, last_seq + 1))
    assert customer.errors == []


async def test_customer_resolves_and_closed_ticket_is_read_only(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await open_ticket_in_widget(page, "Pytanie o VAT", "Jak ustawić obniżoną stawkę VAT 8% dla książek "
                                                       "w katalogu produktów naszego sklepu internetowego?")
    await page.get_by_role("button", name="Problem rozwiązany").click()
    await expect(page.locator(".note")).to_contain_text("rozwiązane")

    agent = await open_tab(1440, 860)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await console.get_by_role("tab", name=re.compile("Rozwiązane")).click()
    await console.locator(".ticket", has_text="Pytanie o VAT").click()
    await console.locator("#act-status").select_option("closed")
    await expect(console.locator("#closed-note")).to_be_visible()

    await expect(page.locator(".note.closed")).to_contain_text("tylko do odczytu")
    await expect(page.get_by_label("Twoja wiadomość")).to_be_hidden()
    await page.locator(".closed-actions").get_by_role("button", name="Nowe zgłoszenie").click()
    await expect(page.get_by_label("Tytuł")).to_be_focused()
    assert customer.errors == [] and agent.errors == []


HOST_PAGE = """<!doctype html>
<html lang="pl"><head><meta charset="utf-8"><title>Host</title></head>
<body><header><b>Panel</b> <span id="slot"></span></header>
<script src="{server}/embed.js" data-mount="#slot"></script>
<script>Pomoc.init({{token: function () {{ return Promise.resolve("{token}"); }}}});</script>
</body></html>"""


async def test_console_sign_in_by_pasted_or_fragment_token_and_presence(pomoc: PomocServer, open_tab: OpenTab) -> None:
    token = pomoc.token("agent", "a-7", name="Ewa")
    agent = await open_tab(1440, 860)
    console = agent.page
    await console.goto(pomoc.base + "/agent")
    await expect(console.get_by_role("button", name="Wejdź jako agent demo")).to_be_visible()
    await console.get_by_label("Token agenta").fill(token)
    await console.get_by_role("button", name="Zaloguj").click()
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await expect(console.locator("#agent-name")).to_have_text("Ewa")
    presence = console.locator("#presence")
    await expect(presence).to_have_attribute("aria-pressed", "true")
    await presence.click()
    await expect(presence).to_have_attribute("aria-pressed", "false")
    await expect(presence).to_have_text("Zaraz wracam")

    second = (await open_tab(1440, 860)).page
    await second.goto(pomoc.base + "/agent#token=" + token)
    await expect(second.locator("#conn")).to_have_text("Połączono")
    assert "token=" not in second.url  # kept out of the address bar and history
    invalid = (await open_tab()).page
    await invalid.goto(pomoc.base + "/agent#token=not-a-token")
    await expect(invalid.locator("#signin-error")).to_contain_text("nieważny")
    assert agent.errors == []


LOG_AT_END = """() => {
  const root = document.querySelector("[data-pomoc]").shadowRoot;
  const log = root.querySelector(".log");
  const images = [...log.querySelectorAll("img")];
  return images.length === 4 && images.every((img) => img.complete && img.naturalWidth > 0) &&
    log.scrollHeight > log.clientHeight && log.scrollHeight - log.scrollTop - log.clientHeight < 2;
}"""


async def test_a_chat_with_images_opens_at_the_newest_message(pomoc: PomocServer, host_site: HostSite,
                                                             open_tab: OpenTab) -> None:
    token = pomoc.token("customer", "owner-8", shop="shop-8", shop_name="Sklep Osiem")
    client = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    try:
        await client.hello(token)
        opened = await client.request({"type": "open_ticket", "title": "Zrzuty ekranu", "severity": "question",
                                       "body": "Błąd przy płatności, zrzuty poniżej.", "client_id": "o"}, "ticket")
        ticket_id = opened["ticket"]["id"]
        async with httpx.AsyncClient(base_url=pomoc.base) as http:
            for i in range(4):
                upload = await http.post(f"/api/tickets/{ticket_id}/attachments",
                                         files={"file": (f"zrzut-{i + 1}.png", image("PNG", (600, 400)), "image/png")},
                                         headers={"Authorization": f"Bearer {token}"})
                assert upload.status_code == 201, upload.text
                ack = await client.request({"type": "send", "ticket": ticket_id, "body": f"Zrzut {i + 1}",
                                            "client_id": f"m{i}", "attachments": [upload.json()["id"]]}, "ack")
                assert ack["type"] == "ack", ack
    finally:
        await client.close()

    customer = await open_tab()
    page = customer.page
    # The images arrive only after the chat has been laid out, as on a slow connection.
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/attachments/**", hold)
    host_site.pages["/panel"] = HOST_PAGE.format(server=pomoc.base, token=token)
    await page.goto(host_site.base + "/panel")
    await page.get_by_role("button", name="POMOC").click()
    await page.locator("button.ticket", has_text="Zrzuty ekranu").click()
    await expect(page.locator(".msg[data-seq] img")).to_have_count(4)
    release.set()
    # Every image loaded, the log taller than its box, and still scrolled to the newest message.
    try:
        await page.wait_for_function(LOG_AT_END)
    except Exception:
        state = await page.evaluate("""() => {
          const log = document.querySelector("[data-pomoc]").shadowRoot.querySelector(".log");
          return {imgs: [...log.querySelectorAll("img")].map((i) => [i.complete, i.naturalWidth, i.src.slice(-40)]),
                  sh: log.scrollHeight, st: log.scrollTop, ch: log.clientHeight};
        }""")
        raise AssertionError(state) from None
    await expect(page.locator(".msg[data-seq]").last).to_be_in_viewport()
    assert customer.errors == []


async def test_the_composer_shows_the_limit_and_a_refused_message_can_be_edited_or_discarded(
        servers: Servers, open_tab: OpenTab) -> None:
    server = await servers(POMOC_MAX_BODY_CHARS="100", POMOC_RATE_USER_MESSAGES="3/60s")
    customer = await open_tab(server=server)
    page = customer.page
    await page.goto(server.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()

    # The form's description counts down near the limit the server announced (welcome.limits).
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Opis problemu").fill("x" * 95)
    await expect(page.locator("[data-pomoc] form .count")).to_have_text("95 / 100 znaków")
    await page.get_by_label("Tytuł").fill("Limit")
    await page.get_by_label("Opis problemu").fill("Import produktów z pliku CSV kończy się błędem od rana.")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()  # the ticket: message 1 of the 3 allowed
    await expect(page.locator(".msg.mine[data-seq='1']")).to_be_visible()

    composer = page.get_by_label("Twoja wiadomość")
    count = page.locator("[data-pomoc] .chat .count")
    await composer.fill("Krótko.")
    await expect(count).to_be_hidden()
    await composer.fill("ą" * 95)  # one character each, as the server counts them
    await expect(count).to_have_text("95 / 100 znaków")
    await composer.fill("ą" * 104)
    await expect(count).to_have_text("104 / 100 znaków — skróć o 4")
    await expect(count).to_have_class(re.compile(r"\bwarn\b"))
    await composer.press("Enter")
    await expect(page.locator("[data-pomoc] .chat .error")).to_have_text("Tekst jest za długi.")
    await expect(composer).to_have_value("ą" * 104)
    await expect(page.locator(".msg.mine")).to_have_count(1)  # nothing went out

    for body in ("Druga wiadomość.", "Trzecia wiadomość."):  # messages 2 and 3 of the 3 allowed
        await composer.fill(body)
        await composer.press("Enter")
        await expect(page.locator(".msg.mine[data-seq]", has_text=body)).to_be_visible()

    # The fourth is refused (rate_limited): it can be edited or discarded, not only retried.
    await composer.fill("Czwarta wiadomość.")
    await composer.press("Enter")
    refused = page.locator(".msg.failed", has_text="Czwarta wiadomość.")
    await expect(refused).to_contain_text("nie wysłano")
    await expect(page.locator("[data-pomoc] .chat .error")).to_contain_text("Za dużo wiadomości")
    for action in ("Ponów", "Edytuj", "Usuń"):
        await expect(refused.get_by_role("button", name=action)).to_be_visible()
    await refused.get_by_role("button", name="Edytuj").click()
    await expect(refused).to_have_count(0)
    await expect(composer).to_have_value("Czwarta wiadomość.")
    await expect(composer).to_be_focused()
    await composer.fill("Czwarta, poprawiona.")
    await composer.press("Enter")
    again = page.locator(".msg.failed", has_text="Czwarta, poprawiona.")
    await again.get_by_role("button", name="Usuń").click()
    await expect(page.locator(".msg.failed, .msg.pending")).to_have_count(0)

    # Discarded for good: a reload brings back neither the message nor a retry of it.
    await page.reload()
    await page.get_by_role("button", name="POMOC").click()
    await page.locator("button.ticket", has_text="Limit").click()
    await expect(page.locator(".msg.mine[data-seq]")).to_have_count(3)
    await expect(page.locator(".msg.failed, .msg.pending")).to_have_count(0)
    assert customer.errors == []


async def test_a_tap_on_a_ticket_lands_while_a_reply_arrives(pomoc: PomocServer, host_site: HostSite,
                                                            open_tab: OpenTab) -> None:
    token = pomoc.token("customer", "owner-6", shop="shop-6", shop_name="Sklep Sześć")
    url = pomoc.base.replace("http", "ws") + "/ws"
    customer_ws = await Client.connect(url)
    agent_ws = await Client.connect(url)
    try:
        await customer_ws.hello(token)
        ids = []
        for title in ("Faktury", "Wysyłka"):
            opened = await customer_ws.request({"type": "open_ticket", "title": title, "severity": "question",
                                                "body": f"{title}: pytanie o ustawienia w panelu sklepu.",
                                                "client_id": title}, "ticket")
            ids.append(opened["ticket"]["id"])
        await agent_ws.hello(pomoc.token("agent", "a-6", name="Ola"))
        await agent_ws.request({"type": "follow", "ticket": ids[1]}, "ticket")

        page = (await open_tab()).page
        host_site.pages["/panel"] = HOST_PAGE.format(server=pomoc.base, token=token)
        await page.goto(host_site.base + "/panel")
        await page.get_by_role("button", name="POMOC").click()
        faktury = page.locator("button.ticket", has_text="Faktury")
        await expect(faktury).to_be_visible()
        box = await faktury.evaluate("el => { const r = el.getBoundingClientRect(); return [r.x + 40, r.y + 12]; }")
        # Pressed on one ticket; before the finger lifts, support answers the other one.
        await page.mouse.move(*box)
        await page.mouse.down()
        await agent_ws.request({"type": "send", "ticket": ids[1], "body": "Odpowiadamy.", "client_id": "r1"}, "ack")
        await expect(page.locator("button.ticket.unread", has_text="Wysyłka")).to_be_visible()
        await page.mouse.up()
        await expect(page.locator("[data-pomoc] .head h2")).to_have_text("Faktury")
    finally:
        await customer_ws.close()
        await agent_ws.close()
