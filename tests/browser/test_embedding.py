"""How the widget lives on a host page: Shadow DOM isolation both ways, one global,
idempotent start, the English catalogue, and a fresh token after 4401.

Host pages come from their own origin (`host_site`, another port), so the widget is
embedded cross-origin and talks to the real server exactly as from a shop panel.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import OpenTab
from tests.browser.harness import HostSite, PomocServer

pytestmark = pytest.mark.browser

HOSTILE_CSS = """
* { color: red !important; font-size: 40px !important; font-family: serif !important;
    line-height: 3 !important; letter-spacing: 4px !important; }
button { display: none !important; }
div, span { background: yellow !important; border: 5px dashed green !important; }
"""

PAGE = """<!doctype html>
<html lang="pl"><head><meta charset="utf-8"><title>Host</title>
<style>{css}</style>
<script>window.__globalsBefore = Object.keys(window);</script>
</head>
<body>
<header class="bar"><b>Sklep</b> <span id="slot"></span></header>
<button class="primary ticket launcher" id="host-button">Zapisz</button>
<div class="panel msg" id="host-div">Treść sklepu</div>
{scripts}
</body></html>"""

WIDGET = """<script src="{server}/embed.js" data-mount="#slot" data-lang="{lang}"></script>
<script>
  Pomoc.init({{token: function () {{ return fetch("/test-token").then(function (r) {{ return r.text(); }}); }}}});
</script>"""

# What a host page may try to change and the widget must keep.
PROPS = ["color", "fontSize", "fontFamily", "display", "backgroundColor", "lineHeight", "letterSpacing",
         "borderTopWidth", "width", "height", "visibility"]
STYLE_OF = "(el, props) => { const s = getComputedStyle(el); return Object.fromEntries(props.map(p => [p, s[p]])); }"


async def serve(page: Page, pomoc: PomocServer, site: HostSite, *, css: str = "", scripts: str | None = None,
                lang: str = "pl", tokens: list[str] | None = None) -> None:
    """Open a host page embedding the widget; the page's /test-token hands out `tokens`."""
    site.tokens = tokens if tokens is not None else [pomoc.token()]
    path = f"/host-{len(site.pages)}"
    site.pages[path] = PAGE.format(css=css, scripts=WIDGET.format(server=pomoc.base, lang=lang)
                                   if scripts is None else scripts)
    await page.goto(site.base + path)


async def widget_styles(page: Page) -> dict[str, dict[str, str]]:
    await page.get_by_role("button", name="POMOC").click()
    await expect(page.get_by_role("button", name="Nowe zgłoszenie")).to_be_visible()
    out = {}
    for selector in (".launcher", ".panel", ".head h2", ".new-ticket", ".row h3", ".body", ".tickets"):
        # "[data-pomoc] X" pierces the widget's (open) shadow root; host elements share these class names.
        out[selector] = await page.locator(f"[data-pomoc] {selector}").evaluate(STYLE_OF, PROPS)
    return out


async def test_host_css_does_not_reach_the_widget_and_widget_css_does_not_leak(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    plain = (await open_tab()).page
    await serve(plain, pomoc, host_site)
    hostile = (await open_tab()).page
    await serve(hostile, pomoc, host_site, css=HOSTILE_CSS)
    # The host's own button is hidden by its own CSS; the widget's is not.
    await expect(hostile.locator("#host-button")).to_be_hidden()
    styles = await widget_styles(plain)
    assert await widget_styles(hostile) == styles
    assert (styles[".launcher"]["display"], styles[".launcher"]["fontSize"]) == ("inline-flex", "13px")
    assert styles[".panel"]["color"] == "rgb(29, 39, 51)"  # the widget's own ink, not inherited

    # Out: host elements sharing the widget's class names look exactly as without the widget.
    bare = (await open_tab()).page
    await serve(bare, pomoc, host_site, scripts="")
    for selector in ("#host-button", "#host-div"):
        with_widget = await plain.locator(selector).evaluate(STYLE_OF, PROPS)
        assert with_widget == await bare.locator(selector).evaluate(STYLE_OF, PROPS), selector


async def test_one_global_idempotent_start_and_mount_point(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    tab = await open_tab()
    page = tab.page
    twice = WIDGET.format(server=pomoc.base, lang="pl") * 2
    await serve(page, pomoc, host_site, scripts=twice)
    await expect(page.get_by_role("button", name="POMOC")).to_be_visible()
    added = await page.evaluate(
        "Object.keys(window).filter(k => k !== '__globalsBefore' && !window.__globalsBefore.includes(k))")
    assert added == ["Pomoc"]
    assert await page.locator("[data-pomoc]").count() == 1
    assert await page.locator("#slot > [data-pomoc]").count() == 1  # mounted in the top bar, not floating
    await expect(page.locator("#host-button")).to_be_visible()
    assert tab.errors == []


async def test_floating_when_no_mount_and_english_catalogue(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    page = (await open_tab()).page
    script = f"""<script src="{pomoc.base}/embed.js"></script>
<script>Pomoc.init({{lang: "en", mount: "#nowhere", tokenUrl: "/test-token"}});</script>"""
    await serve(page, pomoc, host_site, scripts=script)
    launcher = page.get_by_role("button", name="HELP")
    await expect(launcher).to_be_visible()
    assert await page.locator("body > [data-pomoc][data-floating]").count() == 1
    await launcher.click()
    await expect(page.get_by_role("heading", name="Your tickets")).to_be_visible()
    await expect(page.get_by_text("You have no tickets yet")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")


async def test_expired_token_is_replaced_after_4401(
        pomoc: PomocServer, host_site: HostSite, open_tab: OpenTab) -> None:
    page = (await open_tab()).page
    expired = pomoc.token(expired=True)
    fresh = pomoc.token()
    await serve(page, pomoc, host_site, tokens=[expired, fresh])
    await page.get_by_role("button", name="POMOC").click()
    await expect(page.get_by_text("Nie masz jeszcze zgłoszeń")).to_be_visible(timeout=20_000)
    assert host_site.issued[:2] == [expired, fresh]
