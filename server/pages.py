"""Browser-facing pages: the agent console and, in embedded mode, the demo shop.

Routes only; the pages themselves are static files under `widget/`. The console
page learns whether demo sign-in is available from a `<meta name="pomoc-demo">`
tag filled in here, so the static file needs no templating engine. The demo routes
(`/demo`, `/demo/token`) exist only when `settings.demo` is true (embedded mode);
otherwise they answer 404 like any unknown path.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.auth import mint
from server.settings import Settings

WIDGET_DIR = Path(__file__).resolve().parent.parent / "widget"
AGENT_DIR = WIDGET_DIR / "agent"
DEMO_META = '<meta name="pomoc-demo" content="0">'

DEMO_SHOP = "demo-shop"
DEMO_SHOP_NAME = "Sklep Demo"
DEMO_CUSTOMER = "demo-owner"
DEMO_CUSTOMER_NAME = "Właściciel sklepu"
DEMO_AGENT = "demo-agent"
DEMO_AGENT_NAME = "Agnieszka (demo)"

# Pages change with deploys: browsers revalidate them on every load.
_PAGE_CACHE = {"Cache-Control": "no-cache"}


def _not_found() -> Response:
    return JSONResponse({"error": {"code": "not_found", "message": "no such page"}}, status_code=404)


def routes(settings: Settings) -> list[BaseRoute]:
    async def agent_page(request: Request) -> Response:
        html = (AGENT_DIR / "index.html").read_text(encoding="utf-8")
        if settings.demo:
            html = html.replace(DEMO_META, '<meta name="pomoc-demo" content="1">')
        return HTMLResponse(html, headers=_PAGE_CACHE)

    async def console_js(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "console.js", media_type="application/javascript; charset=utf-8",
                            headers=_PAGE_CACHE)

    async def console_css(request: Request) -> Response:
        return FileResponse(AGENT_DIR / "console.css", media_type="text/css; charset=utf-8", headers=_PAGE_CACHE)

    async def demo_page(request: Request) -> Response:
        if not settings.demo:
            return _not_found()
        return FileResponse(WIDGET_DIR / "demo.html", media_type="text/html; charset=utf-8", headers=_PAGE_CACHE)

    async def demo_token(request: Request) -> Response:
        if not settings.demo:
            return _not_found()
        role = request.query_params.get("role", "customer")
        now = request.app.state.node.clock.now()
        if role == "customer":
            sub, name = DEMO_CUSTOMER, DEMO_CUSTOMER_NAME
        elif role == "agent":
            sub, name = DEMO_AGENT, DEMO_AGENT_NAME
        else:
            return JSONResponse({"error": {"code": "bad_request", "message": "role must be customer or agent"}},
                                status_code=400)
        token = mint(settings.secret, role=role, sub=sub, now=now, shop=DEMO_SHOP, shop_name=DEMO_SHOP_NAME,
                     plan="trial", name=name)
        return JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})

    return [
        Route("/agent", agent_page),
        Route("/agent/", agent_page),
        Route("/agent/console.js", console_js),
        Route("/agent/console.css", console_css),
        Route("/demo", demo_page),
        Route("/demo/token", demo_token),
    ]
