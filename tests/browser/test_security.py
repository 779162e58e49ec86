"""What a browser may do with Pomoc's pages, and how long a signed-in person stays signed in.

Real Chromium against a real server: the console refuses to be framed by another
origin and runs no injected inline script (its Content Security Policy), while the
pages, the widget and the console still work under their policies; customer-supplied
links of any scheme but http(s) are plain text in the console; a token in the
console's query string is ignored; and the widget and the console renew their tokens
on the open connection before they expire (the widget silently, the console through
its renewal banner), so the session outlives the first token.

Expiry tests use tokens that live a few seconds. The moment the first token has
expired is observed, not slept for: a second connection holding the same token and
never renewing it is closed by the server with 4401 then.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from server.web.tokens import mint
from tests.browser.conftest import OpenTab
from tests.browser.harness import SECRET, HostSite, PomocServer
from tests.wsclient import Client

pytestmark = pytest.mark.browser

VIOLATIONS = """() => {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation",
    (e) => window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline")));
}"""


def short(role: str, sub: str, seconds: float, *, shop: str = "shop-1", name: str = "Anna") -> str:
    """A token on real time that lives `seconds`."""
    now, ttl = datetime.now(UTC), timedelta(seconds=seconds)
    if role == "agent":
        return mint(SECRET, role="agent", sub=sub, now=now, ttl=ttl, name=name)
    return mint(SECRET, role="customer", sub=sub, now=now, ttl=ttl, shop=shop, shop_name="Sklep Testowy",
                plan="trial", name=name)


async def connect(pomoc: PomocServer, token: str, opened: list[Client]) -> Client:
    client = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    opened.append(client)
    await client.hello(token)
    return client


def count_websockets(page: Page) -> list[str]:
    opened: list[str] = []
    page.on("websocket", lambda ws: opened.append(ws.url))
    return opened


# ------------------------------------------------------------------ headers
async def test_the_console_cannot_be_framed_from_another_origin(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    page = (await open_tab()).page
    host_site.pages["/frames"] = f"""<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head>
<body><iframe id="console" src="{pomoc.base}/agent" title="console"></iframe>
<iframe id="article" src="{pomoc.base}/help/platnosci-przelewy24" title="article"></iframe></body></html>"""
    async with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
        await page.goto(host_site.base + "/frames")
    # Chromium names the refused frame's origin and the directive; only the console has 'none'.
    assert pomoc.base in (await refused.value).text and "frame-ancestors 'none'" in (await refused.value).text
    assert await page.frame_locator("#console").locator("#signin-form").count() == 0  # refused: nothing of it
    # A help article may be shown in a shop's panel (POMOC_ALLOWED_ORIGINS is `*` here): it loads.
    await expect(page.frame_locator("#article").get_by_role("heading", level=1)).to_contain_text("Przelewy24")

    async with httpx.AsyncClient(base_url=pomoc.base) as client:
        for path in ("/agent", "/agent/console.js", "/agent/console.css"):
            got = await client.get(path)
            assert "frame-ancestors 'none'" in got.headers["content-security-policy"], path
            assert got.headers["x-frame-options"] == "DENY", path
            assert got.headers["x-content-type-options"] == "nosniff", path
            assert got.headers["referrer-policy"] == "no-referrer", path
        # Shops load the widget from their own pages: no frame rules, loadable cross-origin.
        script = await client.get("/embed.js")
        assert script.headers["x-content-type-options"] == "nosniff"
        assert script.headers["cross-origin-resource-policy"] == "cross-origin"
        assert "x-frame-options" not in script.headers and "content-security-policy" not in script.headers
        for path in ("/help/platnosci-przelewy24", "/demo", "/healthz", "/api/help/search?q=blik"):
            got = await client.get(path)
            assert "frame-ancestors" in got.headers["content-security-policy"], path
            assert got.headers["x-content-type-options"] == "nosniff", path


async def test_an_injected_inline_script_does_not_run_in_the_console(pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab = await open_tab(1440, 860)
    page = tab.page
    await page.goto(pomoc.base + "/agent?demo=1")
    await expect(page.locator("#conn")).to_have_text("Połączono")
    await page.evaluate(VIOLATIONS)
    ran = await page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.__pwned = 'script'";
      document.body.append(script);
      const holder = document.createElement("div");
      holder.innerHTML = '<img src="/favicon.svg" onload="window.__pwned = \\'handler\\'">';
      document.body.append(holder);
      return window.__pwned || null;
    }""")
    assert ran is None
    # Both were refused by the policy, not merely slow: the browser reports each refusal.
    await page.wait_for_function("window.__violations.length >= 2")
    violations = await page.evaluate("window.__violations")
    assert any(v.startswith("script-src-elem") for v in violations), violations
    assert any(v.startswith("script-src-attr") for v in violations), violations
    await expect(page.locator("img[src='/favicon.svg']")).to_have_count(1)
    assert await page.evaluate("window.__pwned || null") is None


async def test_pages_still_work_under_their_policies(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.add_init_script(f"({VIOLATIONS})()")
    await page.goto(pomoc.base + "/demo")
    launcher = page.locator("#pomoc-slot").get_by_role("button", name="POMOC")
    await expect(launcher).to_be_visible()
    # The widget is styled (its Shadow DOM's own stylesheet) and connected.
    await expect(launcher).to_have_css("border-radius", "17px")
    await launcher.click()
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill("Faktury nie wysyłają się")
    await page.get_by_label("Opis problemu").fill("Od wczoraj faktury do zamówień nie wychodzą mailem do klientów "
                                                  "sklepu, choć w panelu są wystawione poprawnie.")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(2)

    agent = await open_tab(1440, 860)
    console = agent.page
    await console.add_init_script(f"({VIOLATIONS})()")
    await console.goto(pomoc.base + "/agent?demo=1")
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await console.locator(".ticket", has_text="Faktury nie wysyłają się").click()
    await console.get_by_label("Odpowiedź").fill("Sprawdzamy konfigurację poczty.")
    await console.get_by_role("button", name="Wyślij", exact=True).click()
    await expect(page.locator(".msg[data-seq]", has_text="Sprawdzamy konfigurację")).to_have_count(1)
    await expect(console.locator("body")).to_have_css("background-color", "rgb(244, 246, 249)")  # console.css

    article = (await open_tab()).page
    await article.add_init_script(f"({VIOLATIONS})()")
    await article.goto(pomoc.base + "/help/platnosci-przelewy24")
    await expect(article.locator("header")).to_have_css("background-color", "rgb(23, 50, 77)")  # /help.css

    # The mail pages: the demo owner's mailbox and an unsubscribe link's page, styled, never scripted.
    mailbox = (await open_tab()).page
    await mailbox.add_init_script(f"({VIOLATIONS})()")
    await mailbox.goto(pomoc.base + "/demo/mailbox")
    await expect(mailbox.locator("header")).to_have_css("background-color", "rgb(23, 50, 77)")
    unsubscribe = (await open_tab()).page
    await unsubscribe.add_init_script(f"({VIOLATIONS})()")
    await unsubscribe.goto(pomoc.base + "/mail/unsubscribe/not-a-link")
    await expect(unsubscribe.locator("header")).to_have_css("background-color", "rgb(23, 50, 77)")
    for each in (page, console, article, mailbox, unsubscribe):
        assert await each.evaluate("window.__violations") == [], each.url
    assert customer.errors == [] and agent.errors == []


# ------------------------------------------------------------------ links and tokens in URLs
async def test_customer_links_of_other_schemes_are_text_in_the_console(pomoc: PomocServer, open_tab: OpenTab) -> None:
    # Whatever the server lets through, the console must not make it live: the ticket
    # frames are rewritten on their way to the page to carry hostile URLs.
    hostile = {
        "Link do zamówienia": {"page_url": " JaVaScRiPt:alert(document.domain)"},  # order_url stays https
        "Dziwne linki": {"page_url": "data:text/html,<script>alert(1)</script>", "order_url": "javascript:alert(1)"},
    }
    opened: list[Client] = []
    try:
        customer = await connect(pomoc, pomoc.token("customer", "owner-9", shop="shop-9"), opened)
        for title in hostile:
            ticket = await customer.request({"type": "open_ticket", "title": title,
                                             "body": "Zamówienie się nie otwiera w panelu.",
                                             "context": {"page_url": "https://shop.example/panel/orders",
                                                         "order_url": "https://shop.example/orders/77"},
                                             "client_id": str(uuid.uuid4())}, "ticket")
            assert ticket["type"] == "ticket", ticket

        async def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()

            def to_page(message: str | bytes) -> None:
                frame = json.loads(message)
                listed = frame.get("tickets") if isinstance(frame.get("tickets"), list) else []
                one = [frame["ticket"]] if isinstance(frame.get("ticket"), dict) else []
                for t in listed + one:
                    if isinstance(t.get("context"), dict):
                        t["context"].update(hostile.get(t.get("title"), {}))
                ws.send(json.dumps(frame))

            server.on_message(to_page)

        agent = await open_tab(1440, 860)
        console = agent.page
        await console.route_web_socket(re.compile(r".*/ws$"), route)
        await console.goto(pomoc.base + "/agent?demo=1")
        facts = console.locator("#customer")

        await console.locator(".ticket", has_text="Link do zamówienia").click()
        await expect(facts).to_contain_text("JaVaScRiPt:alert(document.domain)")
        # The https order link stays a link; the javascript: page is text.
        link = facts.get_by_role("link", name="https://shop.example/orders/77")
        await expect(link).to_have_attribute("href", "https://shop.example/orders/77")
        await expect(link).to_have_attribute("rel", "noopener noreferrer")
        await expect(facts.locator("a")).to_have_count(1)

        await console.locator(".ticket", has_text="Dziwne linki").click()
        await expect(facts).to_contain_text("javascript:alert(1)")
        await expect(facts).to_contain_text("data:text/html,<script>alert(1)</script>")
        await expect(facts.locator("a")).to_have_count(0)
        assert await console.locator("[href^='javascript' i], [href^='data' i]").count() == 0
        assert agent.errors == []
    finally:
        for client in opened:
            await client.close()


async def test_a_token_in_the_console_query_string_is_ignored(pomoc: PomocServer, open_tab: OpenTab) -> None:
    token = pomoc.token("agent", "a-3", name="Ewa")
    tab = await open_tab(1440, 860)
    page = tab.page
    sockets = count_websockets(page)
    await page.goto(pomoc.base + "/agent?token=" + token)
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-error")).to_contain_text("?token=")
    assert "token" not in page.url  # and it leaves the address bar
    await expect(page.locator("#app")).to_be_hidden()
    assert sockets == []

    # The fragment never reaches the server; the console signs in with it and drops it from the address.
    other = (await open_tab(1440, 860)).page
    await other.goto(pomoc.base + "/agent#token=" + token)
    await expect(other.locator("#conn")).to_have_text("Połączono")
    await expect(other.locator("#agent-name")).to_have_text("Ewa")
    assert "token" not in other.url
    assert tab.errors == []


# ------------------------------------------------------------------ renewing before expiry
async def test_the_widget_renews_its_token_silently_before_it_expires(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    opened: list[Client] = []
    try:
        owner = await connect(pomoc, pomoc.token("customer", "owner-5", shop="shop-5"), opened)
        ticket = await owner.request({"type": "open_ticket", "title": "Dostawy InPost", "body": "Nie liczy kosztu.",
                                      "client_id": str(uuid.uuid4())}, "ticket")
        ticket_id = ticket["ticket"]["id"]

        first = short("customer", "owner-6", 12, shop="shop-5")
        control = await connect(pomoc, first, opened)  # the same token, never renewed
        host_site.tokens = [first, pomoc.token("customer", "owner-6", shop="shop-5")]
        host_site.pages["/panel"] = f"""<!doctype html><html lang="pl"><head><meta charset="utf-8"><title>Panel</title>
</head><body><header><b>Panel</b> <span id="slot"></span></header>
<script src="{pomoc.base}/embed.js" data-mount="#slot" data-token-url="/test-token"></script></body></html>"""
        tab = await open_tab()
        page = tab.page
        sockets = count_websockets(page)
        await page.goto(host_site.base + "/panel")
        await page.get_by_role("button", name="POMOC").click()
        await expect(page.locator("button.ticket", has_text="Dostawy InPost")).to_be_visible()

        assert await control.wait_closed(30) == 4401  # the first token has expired now
        agent = await connect(pomoc, pomoc.token("agent", "a-5", name="Ola"), opened)
        await agent.request({"type": "follow", "ticket": ticket_id}, "ticket")
        await agent.request({"type": "send", "ticket": ticket_id, "body": "Już poprawione.",
                             "client_id": str(uuid.uuid4())}, "ack")
        await page.locator("button.ticket", has_text="Dostawy InPost").click()
        await expect(page.locator(".msg", has_text="Już poprawione.")).to_be_visible()
        # Silently: one socket all along (no 4401, no reconnect), no offline banner, one fresh token asked for.
        await expect(page.locator("[data-pomoc] .banner")).to_be_hidden()
        assert len(sockets) == 1, sockets
        assert host_site.issued == host_site.tokens
        assert tab.errors == []
    finally:
        for client in opened:
            await client.close()


async def test_the_console_asks_for_a_new_token_before_it_expires_and_renews(
        pomoc: PomocServer, open_tab: OpenTab) -> None:
    opened: list[Client] = []
    try:
        first = short("agent", "a-8", 16, name="Iga")
        control = await connect(pomoc, first, opened)  # the same token, never renewed
        tab = await open_tab(1440, 860)
        page = tab.page
        sockets = count_websockets(page)
        await page.goto(pomoc.base + "/agent")
        await page.get_by_label("Token agenta").fill(first)
        await page.get_by_role("button", name="Zaloguj").click()
        await expect(page.locator("#conn")).to_have_text("Połączono")

        banner = page.locator("#renew")
        await expect(banner).to_be_visible(timeout=20_000)
        await expect(banner).to_contain_text("Token wygasa za")
        # Another agent's token is refused, and the banner stays.
        await page.get_by_label("Nowy token").fill(pomoc.token("agent", "a-9", name="Zofia"))
        await page.get_by_role("button", name="Odnów").click()
        await expect(page.locator("#renew-error")).to_contain_text("dla kogoś innego")
        await expect(banner).to_be_visible()

        renewed = pomoc.token("agent", "a-8", name="Iga")
        await page.get_by_label("Nowy token").fill(renewed)
        await page.get_by_role("button", name="Odnów").click()
        await expect(banner).to_be_hidden()

        assert await control.wait_closed(30) == 4401  # the first token has expired now
        customer = await connect(pomoc, pomoc.token("customer", "owner-8", shop="shop-8"), opened)
        await customer.request({"type": "open_ticket", "title": "Zwroty nie działają", "body": "Brak przycisku.",
                                "client_id": str(uuid.uuid4())}, "ticket")
        await expect(page.locator(".ticket", has_text="Zwroty nie działają")).to_be_visible()
        await expect(page.locator("#conn")).to_have_text("Połączono")
        await expect(page.locator("#signin")).to_be_hidden()
        assert len(sockets) == 1, sockets
        assert await page.evaluate("sessionStorage.getItem('pomoc-agent-token')") == renewed
        assert tab.errors == []
    finally:
        for client in opened:
            await client.close()
