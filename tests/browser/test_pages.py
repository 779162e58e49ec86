"""The console and demo routes of server/web/pages.py, over HTTP against a real server.

No browser needed; they live here because they start the same subprocess server.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt

from server.settings import DEV_SECRET
from tests.browser.harness import SECRET, PomocServer, embedded_env, free_port


async def test_console_and_demo_routes_in_embedded_mode(pomoc: PomocServer) -> None:
    async with httpx.AsyncClient(base_url=pomoc.base) as client:
        console = await client.get("/agent")
        assert console.status_code == 200
        assert '<meta name="pomoc-demo" content="1">' in console.text
        assert (await client.get("/agent/console.js")).headers["content-type"].startswith("application/javascript")
        assert (await client.get("/agent/console.css")).headers["content-type"].startswith("text/css")
        demo = await client.get("/demo")
        assert demo.status_code == 200 and 'data-mount="#pomoc-slot"' in demo.text
        # Both pages name the icon the server serves (no 404 for /favicon.ico in the tab).
        for page in (console, demo):
            assert '<link rel="icon" href="/favicon.svg" type="image/svg+xml">' in page.text
        icon = await client.get("/favicon.svg")
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        assert "<svg" in icon.text

        # Demo tokens are minted on the server's (POMOC_CLOCK) time, so expiry is not checked here.
        for role, sub in (("customer", "demo-owner"), ("agent", "demo-agent")):
            answer = await client.get("/demo/token", params={"role": role})
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "no-store"
            claims = jwt.decode(answer.json()["token"], SECRET, algorithms=["HS256"], options={"verify_exp": False})
            assert (claims["role"], claims["sub"], claims["shop"], claims["plan"]) == (role, sub, "demo-shop", "trial")
        agent = (await client.get("/demo/token?role=agent")).json()["token"]
        claims = jwt.decode(agent, SECRET, algorithms=["HS256"], options={"verify_exp": False})
        assert claims["name"] == "Agnieszka (demo)"
        assert (await client.get("/demo/token", params={"role": "admin"})).status_code == 400

        # Help articles, where the widget's suggestions link to: Markdown rendered, nothing raw.
        article = await client.get("/help/platnosci-przelewy24")
        assert article.status_code == 200 and article.headers["content-type"].startswith("text/html")
        assert "<h1>Przelewy24" in article.text and "<strong>Ustawienia &gt; Integracje" in article.text
        assert (await client.get("/help/no-such-article")).status_code == 404


async def test_demo_routes_are_absent_outside_demo_mode(tmp_path: Path) -> None:
    server = PomocServer(tmp_path, free_port(), embedded_env(POMOC_DEMO="false"))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base) as client:
            assert (await client.get("/demo")).status_code == 404
            assert (await client.get("/demo/token", params={"role": "agent"})).status_code == 404
            console = await client.get("/agent")
            assert console.status_code == 200
            assert '<meta name="pomoc-demo" content="0">' in console.text
    finally:
        await server.stop()
    assert SECRET != DEV_SECRET  # the tests never rely on the public development secret
