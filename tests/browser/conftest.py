"""Fixtures for the browser tests: a real Pomoc server per test and Debian's chromium.

Without /usr/bin/chromium the browser tests skip, unless CI=true: then they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, HostSite, PomocServer, embedded_env, free_port

expect.set_options(timeout=15_000)


class Servers:
    """Starts servers with extra environment (`POMOC_CLOCK=…`, limits); the fixture stops them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[PomocServer] = []

    async def __call__(self, **env: str) -> PomocServer:
        workdir = self.tmp_path / f"server-{len(self.started)}"
        workdir.mkdir()
        server = PomocServer(workdir, free_port(), embedded_env(**env))
        self.started.append(server)
        await server.start()
        return server


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    started = Servers(tmp_path)
    yield started
    for server in started.started:
        await server.stop()


@pytest.fixture
async def pomoc(servers: Servers) -> PomocServer:
    return await servers()


@pytest.fixture
def host_site() -> Iterator[HostSite]:
    site = HostSite().start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true: install Debian's chromium (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests")
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


class Tab:
    """A page in its own browser context (own cookies and storage), collecting JS errors."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.context = context
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))


OpenTab = Callable[..., Awaitable[Tab]]


@pytest.fixture
async def open_tab(browser: Browser, servers: Servers) -> AsyncIterator[OpenTab]:
    """Opens a tab whose clock follows `server` (by default the first one started: `pomoc`)."""
    contexts: list[BrowserContext] = []

    async def make(width: int = 1280, height: int = 800, server: PomocServer | None = None) -> Tab:
        server = server or servers.started[0]
        context = await browser.new_context(viewport={"width": width, "height": height}, locale="pl-PL",
                                            timezone_id="Europe/Warsaw")
        context.set_default_timeout(15_000)
        # The browser's clock runs (naturally) from the server's POMOC_CLOCK time, so times
        # the pages stamp themselves agree with the server's.
        await context.clock.install(time=server.now())
        contexts.append(context)
        return Tab(context, await context.new_page())

    yield make
    for context in contexts:
        await context.close()
