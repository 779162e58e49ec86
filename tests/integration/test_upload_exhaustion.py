"""Uploads cannot exhaust a node, against real server processes.

A tiny PNG that declares 40 megapixels decodes into a 160 MB bitmap; forty of them
at once must leave the node's memory where it was (images are decoded in child
processes with their own limits, a few at a time), leak no descriptors and leave no
process behind. The upload limit is charged on the HTTP API (429 with Retry-After).
A child that runs out of memory or time refuses the image with a 4xx, never a 500.
PDFs whose active-content names are hidden behind `#hh` escapes are refused. Help
deflections are limited per shop like uploads.

Rate limits run in both modes (embedded: SQLite and the in-process Redis stand-in;
services: PostgreSQL and Redis); what does not depend on them runs embedded.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.errors import TooLarge, Unavailable
from server.store.filetypes import IMAGE_CLAIMS, UnsupportedType
from server.store.images import ImageChecker
from tests import filesamples as samples
from tests import services
from tests.conftest import Tokens, _drop_schema, database_env, migrate, unique
from tests.servers import ServerProcess, children, open_fds, peak_rss, rss
from tests.wsclient import join

MiB = 1024 * 1024
CONCURRENT = 40
# The node may grow this much above its resting size while forty worst-case images
# are checked (measured: a few MiB; in-process decoding took over 1 GiB).
PEAK_GROWTH_BUDGET = 60 * MiB
# A cap on the node's data segment, so a regression fails this test instead of
# taking the shared test machine's memory with it.
NODE_DATA_CAP = 3 * 1024 * MiB


# ------------------------------------------------------------------ servers
def _base_env(tmp: Path) -> dict[str, str]:
    return {"POMOC_SECRET": services.SECRET, "POMOC_ATTACHMENTS_DIR": str(tmp / "files"),
            "POMOC_CLOCK": services.WORKING_CLOCK, "POMOC_LOG_LEVEL": "INFO", "POMOC_JOBS_IN_WEB": "false"}


@pytest.fixture(scope="module")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("uploads-embedded")
    env = {**_base_env(tmp), **database_env("sqlite", tmp), "REDIS_URL": "memory://"}
    migrate(env)
    return env


@pytest.fixture(scope="module")
def services_env(tmp_path_factory: pytest.TempPathFactory, redis_url: str, postgres_schema: str
                 ) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("uploads-services")
    schema = f"{postgres_schema}_up_{uuid.uuid4().hex[:6]}"
    env = {**_base_env(tmp), **database_env("postgresql", tmp, schema), "REDIS_URL": redis_url,
           "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}up-{uuid.uuid4().hex[:6]}:"}
    migrate(env)
    yield env
    _drop_schema(schema)


@pytest.fixture(scope="module", params=["embedded", "services"])
def mode_env(request: pytest.FixtureRequest) -> dict[str, str]:
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def run(env: dict[str, str], **extra: str) -> ServerProcess:
        # Each server its own Redis prefix: limits charged by one test never reach another.
        prefix = f"{env.get('POMOC_REDIS_PREFIX', 'pomoc:')}{uuid.uuid4().hex[:6]}:"
        node = ServerProcess({**env, "POMOC_REDIS_PREFIX": prefix, **extra},
                             log_path=tmp_path / f"node-{len(started)}.log").start()
        started.append(node)
        return node

    yield run
    for node in started:
        node.stop()


@pytest.fixture(scope="module")
def embedded_node(embedded_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[ServerProcess]:
    """A node with the default settings, for checks that change nothing it keeps."""
    log = tmp_path_factory.mktemp("uploads-node") / "node.log"
    node = ServerProcess(dict(embedded_env), log_path=log).start()
    yield node
    node.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Generous: on a loaded machine forty checks two at a time take a while.
    async with httpx.AsyncClient(timeout=httpx.Timeout(300),
                                 limits=httpx.Limits(max_connections=CONCURRENT + 5)) as c:
        yield c


async def upload(client: httpx.AsyncClient, node: ServerProcess, token: str, data: bytes,
                 name: str = "zrzut.png") -> httpx.Response:
    return await client.post(f"{node.http}/api/attachments", files={"file": (name, data, "image/png")},
                             headers={"Authorization": f"Bearer {token}"})


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)  # polling another process's state, bounded by the deadline


def direct_children(pid: int) -> set[int]:
    """The processes `pid`'s threads started; cheaper to sample than a walk of /proc."""
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.update(int(p) for p in listing.read().split())
    except OSError:
        pass
    return found


def descriptors(pid: int, database: str) -> int:
    """The node's open descriptors but its database files (a connection pool may
    keep one more connection after a burst; that is not a leak)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        count += not target.startswith(database)
    return count


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return dict(body["error"])


# ------------------------------------------------------------- exhaustion
@pytest.mark.timeout(600)  # forty decodes of 40 MP, two at a time, on a shared machine
async def test_forty_concurrent_worst_case_images_leave_the_node_flat(
        embedded_env: dict[str, str], start: Callable[..., ServerProcess], client: httpx.AsyncClient,
        tokens: Tokens, shop: str) -> None:
    node = start(embedded_env)
    pid = node.pid
    resource.prlimit(pid, resource.RLIMIT_DATA, (NODE_DATA_CAP, NODE_DATA_CAP))
    token = tokens.customer(shop)
    bomb = samples.png_bomb()
    # Warm up: the first upload loads what later ones reuse (connections, threads, imports).
    assert (await upload(client, node, token, samples.png())).status_code == 201
    database = embedded_env["DATABASE_URL"].split("///", 1)[1]
    rss_before, peak_before, fds_before = rss(pid), peak_rss(pid), open_fds(pid)
    own_fds_before = descriptors(pid, database)

    most_children = 0
    done = asyncio.Event()

    async def sample_children() -> None:
        nonlocal most_children
        while not done.is_set():
            most_children = max(most_children, len(direct_children(pid)))
            await asyncio.sleep(0.05)  # sampling, not synchronisation

    sampler = asyncio.create_task(sample_children())
    began = time.monotonic()
    try:
        responses = await asyncio.gather(*(upload(client, node, token, bomb, f"bomb-{i}.png")
                                           for i in range(CONCURRENT)), return_exceptions=True)
    finally:
        done.set()
        await sampler
    elapsed = time.monotonic() - began
    await client.aclose()  # the node's sockets close too

    alive = node.proc is not None and node.proc.poll() is None
    if alive:
        await wait_until(lambda: not children(pid), 30, "every image checker has exited")
        await wait_until(lambda: descriptors(pid, database) <= own_fds_before, 30,
                         "the node's descriptors are back")
    rss_after, peak_after, fds_after = rss(pid), peak_rss(pid), open_fds(pid)
    growth = peak_after - rss_before
    statuses = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in responses]
    print(f"\n{CONCURRENT} worst-case uploads ({len(bomb) / 1024:.0f} KB, 8000×5000) in {elapsed:.1f} s: "
          f"RSS {rss_before / MiB:.1f} → {rss_after / MiB:.1f} MiB, peak (VmHWM) {peak_before / MiB:.1f} → "
          f"{peak_after / MiB:.1f} MiB, peak growth {growth / MiB:.1f} MiB, fds {fds_before} → {fds_after}, "
          f"at most {most_children} checker processes at once; statuses {sorted(set(map(str, statuses)))}")

    assert alive, f"the node died; log:\n{node.log()[-2000:]}"
    assert statuses == [201] * CONCURRENT, statuses
    assert all(r.json()["content_type"] == "image/png" for r in responses if isinstance(r, httpx.Response))
    assert growth < PEAK_GROWTH_BUDGET, f"peak grew by {growth / MiB:.1f} MiB"
    assert 1 <= most_children <= 2, "the images were checked in children, at most POMOC_IMAGE_CHECKS at once"
    assert descriptors(pid, database) <= own_fds_before
    assert not children(pid)


async def test_an_image_over_the_checkers_memory_is_refused_with_413(
        embedded_env: dict[str, str], start: Callable[..., ServerProcess], client: httpx.AsyncClient,
        tokens: Tokens, shop: str) -> None:
    # 96 MiB of address space: a small screenshot decodes, a 20-megapixel bitmap
    # (80 MB, below the up-front estimate) runs the child out of memory.
    node = start(embedded_env, POMOC_IMAGE_CHECK_MEMORY=str(96 * MiB))
    token = tokens.customer(shop)
    assert (await upload(client, node, token, samples.png())).status_code == 201
    refused = await upload(client, node, token, samples.png_bomb(5000, 4000))
    assert refused.status_code == 413, refused.text
    error = _error(refused)
    assert error["code"] == "too_large" and "memory" in error["message"]
    # A WebP's canvases cost far more: judged by its header before decoding.
    big_webp = samples.image("WEBP", (3000, 2000))
    refused = await upload(client, node, token, big_webp, "duzy.webp")
    assert refused.status_code == 413 and _error(refused)["code"] == "too_large"
    assert node.proc is not None and node.proc.poll() is None
    await wait_until(lambda: not children(node.pid), 30, "the image checkers have exited")


# The parent's side of the child's failures, with real child processes standing in.
PNG = IMAGE_CLAIMS["image/png"]


def _spool(data: bytes) -> Any:
    from tempfile import SpooledTemporaryFile

    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=1024 * 1024)
    spool.write(data)
    return spool


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "checker.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(("case", "error"), [
    ("out of wall-clock time", TooLarge),
    ("killed for CPU time", TooLarge),
    ("killed", TooLarge),
    ("crashed without an answer", UnsupportedType),
    ("answered nonsense", UnsupportedType),
    ("cannot be started", Unavailable),
])
async def test_a_failing_checker_refuses_the_image(tmp_path: Path, case: str, error: type[Exception]) -> None:
    scripts = {
        "out of wall-clock time": "exec /bin/sleep 30",
        "killed for CPU time": "kill -XCPU $$",
        "killed": "kill -KILL $$",
        "crashed without an answer": "exit 3",
        "answered nonsense": "echo '[1, 2'",
    }
    python = _script(tmp_path, scripts[case]) if case in scripts else str(tmp_path / "no-such-python")
    checker = ImageChecker(python=python, timeout=0.5)
    before = set(children(os.getpid()))
    with _spool(samples.png()) as spool, pytest.raises(error) as raised:
        await checker.check(spool, PNG)
    assert getattr(raised.value, "http_status", 0) in (413, 415, 503)
    assert set(children(os.getpid())) <= before, "the checker process was reaped"


async def test_the_checker_proves_a_real_image_and_refuses_a_broken_one() -> None:
    checker = ImageChecker()
    with _spool(samples.png()) as spool:
        kind = await checker.check(spool, PNG)
        assert (kind.content_type, kind.width, kind.height) == ("image/png", 40, 30)
        spool.seek(0)
        assert spool.read() == samples.png(), "the upload is intact for storing"
    with _spool(samples.png()[:60]) as spool, pytest.raises(UnsupportedType):
        await checker.check(spool, PNG)
    with _spool(samples.png_claiming(50_000, 50_000)) as spool, pytest.raises(TooLarge):
        await checker.check(spool, PNG)


# ------------------------------------------------------------- the limit
async def test_the_upload_limit_answers_429_with_retry_after(
        mode_env: dict[str, str], start: Callable[..., ServerProcess], client: httpx.AsyncClient,
        tokens: Tokens, shop: str) -> None:
    node = start(mode_env, POMOC_RATE_SHOP_UPLOADS="5/1h")
    token = tokens.customer(shop)
    statuses = [(await upload(client, node, token, samples.png(), f"{i}.png")).status_code for i in range(5)]
    assert statuses == [201] * 5
    sixth = await upload(client, node, token, samples.png(), "6.png")
    assert sixth.status_code == 429, sixth.text
    assert _error(sixth)["code"] == "rate_limited"
    # One upload every 12 minutes after the burst of five.
    assert 600 <= int(sixth.headers["retry-after"]) <= 720
    # The allowance is the shop's: a colleague shares it, another shop has its own.
    colleague = await upload(client, node, tokens.customer(shop, sub="colleague"), samples.png())
    assert colleague.status_code == 429
    assert (await upload(client, node, tokens.customer(unique("shop")), samples.png())).status_code == 201
    # Charged before the body is read (a refused upload costs no bandwidth): even a
    # body that is not multipart at all gets the 429, not a 400.
    not_multipart = await client.post(f"{node.http}/api/attachments", content=b"not a form",
                                      headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
    assert not_multipart.status_code == 429


async def test_an_agent_uploads_on_an_allowance_of_its_own(
        mode_env: dict[str, str], start: Callable[..., ServerProcess], client: httpx.AsyncClient,
        clients: list[Any], tokens: Tokens, shop: str) -> None:
    node = start(mode_env, POMOC_RATE_SHOP_UPLOADS="2/1h")
    customer, _ = await join(node, clients, tokens.customer(shop))
    opened = await customer.request({"type": "open_ticket", "title": "Zdjęcia produktów", "body": "Nie widać zdjęć",
                                     "client_id": str(uuid.uuid4())}, "ticket")
    assert opened["type"] == "ticket", opened
    url = f"{node.http}/api/tickets/{opened['ticket']['id']}/attachments"

    async def to_ticket(token: str) -> int:
        response = await client.post(url, files={"file": ("zrzut.png", samples.png(), "image/png")},
                                     headers={"Authorization": f"Bearer {token}"})
        return response.status_code

    shop_token, agent_token = tokens.customer(shop), tokens.agent()
    # The shop's uploads do not spend the agent's allowance, nor the agent's the shop's.
    assert [await to_ticket(shop_token) for _ in range(3)] == [201, 201, 429]
    assert [await to_ticket(agent_token) for _ in range(3)] == [201, 201, 429]


# ------------------------------------------------------------------ PDFs
def _pdf_with(extra: bytes) -> bytes:
    return samples.pdf(extra)


HOSTILE_PDFS = [
    ("/J#61vaScript", _pdf_with(b"/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >> ")),
    ("/#4Aava#53cript", _pdf_with(b"/OpenAction << /S /#4Aava#53cript /#4a#53 (app.alert(1)) >> ")),
    ("/EmbeddedFiles", _pdf_with(b"/Names << /EmbeddedFiles << /Names [(faktura.exe) 3 0 R] >> >> ")),
    ("/Embedded#46iles", _pdf_with(b"/Names << /Embedded#46iles << /Names [(faktura.exe) 3 0 R] >> >> ")),
    ("/L#61unch", _pdf_with(b"/OpenAction << /S /L#61unch /F (cmd.exe) >> ")),
    ("/#52ich#4dedia", _pdf_with(b"/AA << /O << /S /#52ich#4dedia >> >> ")),
]


@pytest.mark.parametrize(("label", "data"), HOSTILE_PDFS, ids=[h[0] for h in HOSTILE_PDFS])
async def test_pdfs_hiding_active_content_behind_escaped_names_are_refused(
        embedded_node: ServerProcess, client: httpx.AsyncClient, tokens: Tokens, shop: str, label: str,
        data: bytes) -> None:
    node = embedded_node
    response = await upload(client, node, tokens.customer(shop), data, "faktura.pdf")
    assert response.status_code == 415, response.text
    assert "scripts" in _error(response)["message"]
    # An escaped name that means nothing active is fine.
    harmless = _pdf_with(b"/PageMode /Use#4Futlines /Lang (pl-PL) ")
    assert (await upload(client, node, tokens.customer(shop), harmless, "faktura.pdf")).status_code == 201


# ------------------------------------------------------------ deflections
async def test_help_deflections_are_limited_per_shop(
        mode_env: dict[str, str], start: Callable[..., ServerProcess], client: httpx.AsyncClient,
        tokens: Tokens, shop: str) -> None:
    node = start(mode_env, POMOC_RATE_SHOP_DEFLECTIONS="3/1h")

    async def deflect(token: str) -> httpx.Response:
        return await client.post(f"{node.http}/api/help/deflections", headers={"Authorization": f"Bearer {token}"},
                                 json={"article": "faktury-ksef", "query": "jak wystawić fakturę"})

    token = tokens.customer(shop)
    assert [(await deflect(token)).status_code for _ in range(3)] == [204] * 3
    fourth = await deflect(token)
    assert fourth.status_code == 429, fourth.text
    assert _error(fourth)["code"] == "rate_limited"
    assert 1000 <= int(fourth.headers["retry-after"]) <= 1200  # one every 20 minutes after the burst
    assert (await deflect(tokens.customer(shop, sub="colleague"))).status_code == 429
    assert (await deflect(tokens.customer(unique("shop")))).status_code == 204


async def test_help_deflections_have_a_default_limit(embedded_node: ServerProcess, client: httpx.AsyncClient,
                                                     tokens: Tokens, shop: str) -> None:
    token = tokens.customer(shop)
    statuses = []
    for _ in range(40):
        response = await client.post(f"{embedded_node.http}/api/help/deflections",
                                     headers={"Authorization": f"Bearer {token}"}, json={"article": "domena-ssl"})
        statuses.append(response.status_code)
    assert statuses == [204] * 30 + [429] * 10  # POMOC_RATE_SHOP_DEFLECTIONS: 30/1h


async def test_uploads_have_a_default_limit(embedded_node: ServerProcess, client: httpx.AsyncClient,
                                            tokens: Tokens, shop: str) -> None:
    token = tokens.customer(shop)
    statuses = [(await upload(client, embedded_node, token, samples.text_log(), f"{i}.log")).status_code
                for i in range(110)]
    assert statuses == [201] * 100 + [429] * 10  # POMOC_RATE_SHOP_UPLOADS: 100/1h
