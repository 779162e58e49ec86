"""Browser-facing pages: the agent console and, in embedded mode, the demo shop.

Routes only; the pages themselves are static files under `widget/`, except the help
articles (`/help/{id}`, the `url` of `/api/help/search` hits), rendered from their
Markdown in `settings.help_dir` by a deliberately small renderer below (styled by
`/help.css`: the pages carry no inline script or style, see `server.web.headers`). The console
page learns whether demo sign-in is available from a `<meta name="pomoc-demo">`
tag filled in here, so the static file needs no templating engine. The demo routes
(`/demo`, `/demo/token`) exist only when `settings.demo` is true (embedded mode);
otherwise they answer 404 like any unknown path.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.rules.helpsearch import Article, load_articles
from server.settings import Settings
from server.web.tokens import mint

WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget"
AGENT_DIR = WIDGET_DIR / "agent"
DEMO_META = '<meta name="pomoc-demo" content="0">'

DEMO_SHOP = "demo-shop"
DEMO_SHOP_NAME = "Sklep Demo"
DEMO_CUSTOMER = "demo-owner"
DEMO_CUSTOMER_NAME = "Właściciel sklepu"
# Mail to the demo owner stays in the local mailbox (/demo/mailbox) unless SMTP is set up.
DEMO_CUSTOMER_EMAIL = "wlasciciel@sklep-demo.example"
DEMO_AGENT = "demo-agent"
DEMO_AGENT_NAME = "Agnieszka (demo)"

# Pages change with deploys: browsers revalidate them on every load.
_PAGE_CACHE = {"Cache-Control": "no-cache"}


def _not_found() -> Response:
    return JSONResponse({"error": {"code": "not_found", "message": "no such page"}}, status_code=404)


# ---------------------------------------------------------------- help articles
_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"\*(.+?)\*"), r"<em>\1</em>"),
           (re.compile(r"`(.+?)`"), r"<code>\1</code>")]
_BULLET = re.compile(r"^\s*(?:[-+*]|\d+\.)\s+")
_HELP_PAGE = """<!doctype html>
<html lang="pl"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><link rel="icon" href="/favicon.svg" type="image/svg+xml">
<title>{title} — Pomoc</title>
<link rel="stylesheet" href="/help.css">
</head><body><header>POMOC · centrum pomocy</header><main><h1>{title}</h1>
{body}</main></body></html>"""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def render_markdown(markdown: str) -> str:
    """The Markdown the help articles use — headings, bullet and numbered lists, paragraphs,
    **bold**, *emphasis*, `code` — as HTML. Everything is escaped first: no raw HTML passes."""
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if not line:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 4)
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif _BULLET.match(line):
            if paragraph:
                flush()
            items.append(_BULLET.sub("", line))
        elif items and raw[:1].isspace():
            items[-1] += " " + line  # a wrapped list item
        else:
            if items:
                flush()
            paragraph.append(line)
    flush()
    return "\n".join(blocks)


def routes(settings: Settings) -> list[BaseRoute]:
    help_articles: dict[str, Article] = {}

    async def help_article(request: Request) -> Response:
        if not help_articles:
            try:
                help_articles.update((a.id, a) for a in load_articles(settings.help_dir))
            except ValueError:
                return _not_found()
        article = help_articles.get(request.path_params["article_id"])
        if article is None:
            return _not_found()
        page = _HELP_PAGE.format(title=html.escape(article.title), body=render_markdown(article.body))
        return HTMLResponse(page, headers=_PAGE_CACHE)

    async def agent_page(request: Request) -> Response:
        html = (AGENT_DIR / "index.html").read_text(encoding="utf-8")
        if settings.demo:
            html = html.replace(DEMO_META, '<meta name="pomoc-demo" content="1">')
        return HTMLResponse(html, headers=_PAGE_CACHE)

    async def console_js(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "console.js", media_type="application/javascript; charset=utf-8",
                            headers=_PAGE_CACHE)

    async def reports_js(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "reports.js", media_type="application/javascript; charset=utf-8",
                            headers=_PAGE_CACHE)

    async def canned_js(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "canned.js", media_type="application/javascript; charset=utf-8",
                            headers=_PAGE_CACHE)

    async def console_css(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "console.css", media_type="text/css; charset=utf-8", headers=_PAGE_CACHE)

    async def help_css(request: Request) -> Response:
        return FileResponse(WIDGET_DIR / "help.css", media_type="text/css; charset=utf-8", headers=_PAGE_CACHE)

    async def favicon(request: Request) -> Response:
        return FileResponse(WIDGET_DIR / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    async def demo_page(request: Request) -> Response:
        if not settings.demo:
            return _not_found()
        return FileResponse(WIDGET_DIR / "demo.html", media_type="text/html; charset=utf-8", headers=_PAGE_CACHE)

    async def demo_token(request: Request) -> Response:
        if not settings.demo:
            return _not_found()
        role = request.query_params.get("role", "customer")
        now = request.app.state.adapters.wall.now()  # tokens live on real time, whatever POMOC_CLOCK says
        email = None
        if role == "customer":
            sub, name, email = DEMO_CUSTOMER, DEMO_CUSTOMER_NAME, DEMO_CUSTOMER_EMAIL
        elif role == "agent":
            sub, name = DEMO_AGENT, DEMO_AGENT_NAME
        else:
            return JSONResponse({"error": {"code": "bad_request", "message": "role must be customer or agent"}},
                                status_code=400)
        token = mint(settings.secret, role=role, sub=sub, now=now, shop=DEMO_SHOP, shop_name=DEMO_SHOP_NAME,
                     plan="trial", name=name, email=email)
        return JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})

    return [
        Route("/agent", agent_page),
        Route("/agent/", agent_page),
        Route("/agent/console.js", console_js),
        Route("/agent/canned.js", canned_js),
        Route("/agent/reports.js", reports_js),
        Route("/agent/console.css", console_css),
        Route("/favicon.svg", favicon),
        Route("/favicon.ico", favicon),
        Route("/demo", demo_page),
        Route("/demo/token", demo_token),
        Route("/help.css", help_css),
        Route("/help/{article_id}", help_article),
    ]
