"""Attachment HTTP endpoints and store against a real, migrated SQLite database.

A tiny Starlette app is built inline from `server.store.attachments.routes` and driven in
process with httpx's ASGI transport. The database — a temporary SQLite file and a
PostgreSQL schema — is brought to head by the real Alembic migrations, which
create the attachments table.
"""

from __future__ import annotations

import shutil
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from server.clock import FixedClock
from server.errors import BadRequest, Forbidden, NotFound
from server.principal import Principal, Role
from server.settings import Settings
from server.store import models
from server.store.attachments import MAX_PER_MESSAGE, AttachmentStore
from server.store.db import create_engine, migrate
from server.store.models import messages, shops, tickets
from server.web import attachments_api
from server.web.tokens import mint
from server.web.uploads import MiB, UploadLimits
from tests import filesamples as samples
from tests import services
from tests.conftest import _drop_schema

SECRET = "attachments-test-secret-0123456789"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database at the head migration: a SQLite template file (copied per test) or
    a PostgreSQL schema of this module (emptied after each test)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("attachments-db") / "template.db"
        settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", secret=SECRET)
        migrate(settings)
        yield settings
        return
    services.require("PostgreSQL", services.POSTGRES_URL)
    schema = f"{services.PG_SCHEMA}_att_{uuid.uuid4().hex[:6]}"
    settings = Settings(database_url=services.POSTGRES_URL, database_schema=schema, secret=SECRET)
    migrate(settings)
    yield settings
    _drop_schema(schema)


@dataclass
class World:
    app: Starlette
    client: httpx.AsyncClient
    store: AttachmentStore
    engine: AsyncEngine
    table: Table
    clock: FixedClock
    root: Path
    tickets: dict[str, int]
    messages: dict[str, int]

    def token(self, shop: str | None = "shop-a", sub: str = "owner", role: str = "customer",
              ttl: timedelta = timedelta(hours=1)) -> dict[str, str]:
        if role == "agent":
            token = mint(SECRET, role="agent", sub=sub, name="Agnieszka", now=self.clock.now(), ttl=ttl)
        else:
            token = mint(SECRET, role="customer", sub=sub, shop=shop, now=self.clock.now(), ttl=ttl)
        return {"Authorization": f"Bearer {token}"}

    async def upload(self, data: bytes, name: str = "plik.bin", ticket: str | None = "a1",
                     headers: dict[str, str] | None = None) -> httpx.Response:
        url = "/api/attachments" if ticket is None else f"/api/tickets/{self.tickets[ticket]}/attachments"
        return await self.client.post(url, files={"file": (name, data, "application/octet-stream")},
                                      headers=self.token() if headers is None else headers)


def customer(shop: str = "shop-a", sub: str = "owner") -> Principal:
    return Principal(role=Role.customer, id=sub, name=sub, shop=shop)


AGENT = Principal(role=Role.agent, id="agent-1", name="Agnieszka")


async def _seed(engine: AsyncEngine) -> tuple[dict[str, int], dict[str, int]]:
    ticket_ids: dict[str, int] = {}
    message_ids: dict[str, int] = {}
    async with engine.begin() as conn:
        for shop in ("shop-a", "shop-b"):
            await conn.execute(insert(shops).values(id=shop, name=shop, plan="standard", created_at=NOW,
                                                    updated_at=NOW))
        for key, shop, status in (("a1", "shop-a", "open"), ("a2", "shop-a", "open"), ("b1", "shop-b", "open"),
                                  ("closed", "shop-a", "closed")):
            result = await conn.execute(insert(tickets).values(
                shop_id=shop, created_by="owner", title=f"Ticket {key}", status=status, severity="minor",
                context={}, last_seq=3, created_at=NOW, updated_at=NOW))
            ticket_ids[key] = int(result.inserted_primary_key[0])
            for seq in (1, 2, 3):
                m = await conn.execute(insert(messages).values(
                    ticket_id=ticket_ids[key], seq=seq, author_kind="customer", author_id="owner",
                    author_name="owner", body="…", client_id=f"{key}-{seq}", created_at=NOW))
                message_ids[f"{key}.{seq}"] = int(m.inserted_primary_key[0])
    return ticket_ids, message_ids


@pytest.fixture
async def world(migrated: Settings, tmp_path: Path) -> AsyncIterator[World]:
    settings = migrated
    if settings.is_sqlite:
        db = tmp_path / "pomoc.db"
        shutil.copy(settings.database_url.split("///", 1)[1], db)
        settings = settings.with_(database_url=f"sqlite+aiosqlite:///{db}")
    engine = create_engine(settings)
    table = models.attachments
    ticket_ids, message_ids = await _seed(engine)
    root = tmp_path / "files"
    store = AttachmentStore(engine, table, root, SECRET)
    clock = FixedClock(NOW)
    app = Starlette(routes=attachments_api.routes(store_of=lambda request: store, secret=SECRET, clock=clock))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://pomoc.test") as client:
            yield World(app, client, store, engine, table, clock, root, ticket_ids, message_ids)
    finally:
        if not settings.is_sqlite:
            async with engine.begin() as conn:
                await conn.execute(table.delete())
                await conn.execute(shops.delete())
        await engine.dispose()


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return dict(body["error"])


# ------------------------------------------------------------------ uploads

ALLOWED = [
    ("screen.png", samples.png(), "image/png", "inline"),
    ("photo.jpg", samples.jpeg(), "image/jpeg", "inline"),
    ("anim.gif", samples.gif(), "image/gif", "inline"),
    ("pic.webp", samples.webp(), "image/webp", "inline"),
    ("faktura.pdf", samples.pdf(), "application/pdf", "attachment"),
    ("sklep.log", samples.text_log(), "text/plain; charset=utf-8", "attachment"),
]


@pytest.mark.parametrize(("name", "data", "content_type", "disposition"), ALLOWED, ids=[a[0] for a in ALLOWED])
async def test_upload_and_download_every_allowed_type(world: World, name: str, data: bytes, content_type: str,
                                                      disposition: str) -> None:
    response = await world.upload(data, name)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "content_type", "size"}
    assert (body["name"], body["content_type"], body["size"]) == (name, content_type, len(data))

    got = await world.client.get(f"/api/attachments/{body['id']}", headers=world.token())
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == content_type
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert got.headers["cache-control"].startswith("private")
    assert got.headers["content-disposition"].startswith(f"{disposition};")
    assert name in got.headers["content-disposition"]


async def test_content_is_stored_once_under_its_sha256(world: World) -> None:
    data = samples.png()
    first = (await world.upload(data, "a.png")).json()
    second = (await world.upload(data, "b.png", ticket="a2")).json()
    assert first["id"] != second["id"]
    a = await world.store.get(first["id"])
    path = world.store.path(a)
    assert path == world.root / a.sha256[:2] / a.sha256[2:4] / a.sha256
    assert path.read_bytes() == data
    stored = [p for p in world.root.rglob("*") if p.is_file()]
    assert stored == [path], "one content file, no temporaries left behind"


DISGUISED = [
    ("screenshot.png", samples.HTML, 415),
    ("logo.svg", samples.SVG, 415),
    ("broken.jpg", samples.jpeg()[:300], 415),
    ("anim.gif", b"GIF89a" + b"\xde\xad\xbe\xef" * 64, 415),
    ("invoice.pdf", samples.zip_archive(), 415),
    ("empty.txt", b"", 400),
    ("bomb.png", samples.png_claiming(50_000, 50_000), 413),
]


@pytest.mark.parametrize(("name", "data", "status"), DISGUISED, ids=[d[0] for d in DISGUISED])
async def test_disguised_files_are_refused(world: World, name: str, data: bytes, status: int) -> None:
    response = await world.upload(data, name)
    assert response.status_code == status
    error = _error(response)
    assert error["code"] == {415: "bad_request", 400: "bad_request", 413: "too_large"}[status]
    async with world.engine.connect() as conn:
        assert (await conn.execute(select(world.table))).first() is None
    assert not any(p.is_file() for p in world.root.rglob("*") if p.parent.name not in ("tmp", "trash"))


@pytest.mark.parametrize(("raw_name", "shown"), [
    (b"../../etc/passwd\x00.log", "passwd.log"),
    (b"..\\..\\boot.ini", "boot.ini.txt"),
    ("zg\u0142oszenie\u202egol.txt".encode(), "zg\u0142oszeniegol.txt"),
    (b"a" * 3000 + b".log", "a" * 116 + ".log"),
])
async def test_path_traversal_name_becomes_a_display_name(world: World, raw_name: bytes, shown: str) -> None:
    # Built by hand: httpx would percent-encode the NUL and the backslashes.
    boundary = b"pomoc-test-boundary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + raw_name
            + b'"\r\n\r\n' + samples.text_log() + b"\r\n--" + boundary + b"--\r\n")
    response = await world.client.post(
        f"/api/tickets/{world.tickets['a1']}/attachments", content=body,
        headers={**world.token(), "Content-Type": "multipart/form-data; boundary=pomoc-test-boundary"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == shown
    assert not (world.root.parent / "etc").exists()


async def _endless(chunk: int, total: int, sent: list[int], head: bytes) -> AsyncIterator[bytes]:
    yield head
    sent[0] += len(head)
    block = b"\0" * chunk
    while sent[0] < total:
        sent[0] += chunk
        yield block


async def test_oversize_upload_is_cut_off_while_streaming(world: World) -> None:
    boundary = "pomoc-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.log\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    sent = [0]
    chunk = 256 * 1024
    tracemalloc.start()
    try:
        response = await world.client.post(
            f"/api/tickets/{world.tickets['a1']}/attachments",
            content=_endless(chunk, 200 * MiB, sent, head),
            headers={**world.token(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert _error(response)["code"] == "too_large"
    limits = UploadLimits()
    # Reading stopped within one chunk of the cap, never near the 200 MB offered …
    assert sent[0] <= limits.max_body + chunk
    # … and the bytes went to a bounded spool, not into memory.
    assert peak < 6 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    assert not any(p.is_file() for p in world.root.rglob("*"))


async def test_declared_oversize_is_refused_before_reading(world: World) -> None:
    sent = [0]
    response = await world.client.post(
        f"/api/tickets/{world.tickets['a1']}/attachments",
        content=_endless(64 * 1024, 11 * MiB, sent, b""),
        headers={**world.token(), "Content-Type": "multipart/form-data; boundary=x",
                 "Content-Length": str(11 * MiB)})
    assert response.status_code == 413
    assert sent[0] == 0


async def test_limits_come_from_arguments(world: World) -> None:
    app = Starlette(routes=attachments_api.routes(store_of=lambda request: world.store, secret=SECRET,
                                              clock=world.clock, limits=UploadLimits(max_bytes=1024)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://pomoc.test") as client:
        url = f"/api/tickets/{world.tickets['a1']}/attachments"
        small = await client.post(url, files={"file": ("a.txt", b"x" * 1024)}, headers=world.token())
        big = await client.post(url, files={"file": ("a.txt", b"x" * 1025)}, headers=world.token())
    assert (small.status_code, big.status_code) == (201, 413)


@pytest.mark.parametrize(("case", "status", "code"), [
    ("no token", 401, "unauthorized"),
    ("not bearer", 401, "unauthorized"),
    ("bad signature", 401, "unauthorized"),
    ("expired", 401, "unauthorized"),
    ("other shop's ticket", 403, "forbidden"),
    ("missing ticket", 403, "forbidden"),  # a customer cannot tell it from another shop's
    ("agent, missing ticket", 404, "not_found"),
    ("ticket id not a number", 404, "not_found"),
    ("closed ticket", 409, "closed_ticket"),
    ("agent before a ticket", 400, "bad_request"),
    ("no file field", 400, "bad_request"),
    ("two files", 400, "bad_request"),
    ("not multipart", 400, "bad_request"),
])
async def test_upload_refusals(world: World, case: str, status: int, code: str) -> None:
    url = f"/api/tickets/{world.tickets['a1']}/attachments"
    files: Any = {"file": ("a.png", samples.png())}
    headers = world.token()
    if case == "no token":
        headers = {}
    elif case == "not bearer":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    elif case == "bad signature":
        headers = {"Authorization": "Bearer " + mint("x" * 32, role="customer", sub="u", shop="shop-a", now=NOW)}
    elif case == "expired":
        headers = world.token(ttl=timedelta(hours=1))
        world.clock.advance(timedelta(hours=2))
    elif case == "other shop's ticket":
        url = f"/api/tickets/{world.tickets['b1']}/attachments"
    elif case == "missing ticket":
        url = "/api/tickets/999999/attachments"
    elif case == "agent, missing ticket":
        url, headers = "/api/tickets/999999/attachments", world.token(role="agent", sub="agent-1")
    elif case == "ticket id not a number":
        url = "/api/tickets/12abc/attachments"
    elif case == "closed ticket":
        url = f"/api/tickets/{world.tickets['closed']}/attachments"
    elif case == "agent before a ticket":
        url, headers = "/api/attachments", world.token(role="agent", sub="agent-1")
    elif case == "no file field":
        files = {"other": ("a.png", samples.png())}
    elif case == "two files":
        files = [("file", ("a.png", samples.png())), ("file", ("b.png", samples.png()))]
    if case == "not multipart":
        response = await world.client.post(url, content=samples.png(),
                                           headers={**headers, "Content-Type": "image/png"})
    else:
        response = await world.client.post(url, files=files, headers=headers)
    assert response.status_code == status, response.text
    assert _error(response)["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_agent_uploads_to_any_ticket(world: World) -> None:
    response = await world.upload(samples.png(), ticket="b1", headers=world.token(role="agent", sub="agent-1"))
    assert response.status_code == 201
    stored = await world.store.get(response.json()["id"])
    assert (stored.shop_id, stored.uploader) == ("shop-b", "a:agent-1")


# ---------------------------------------------------------------- downloads

async def test_download_authorization(world: World) -> None:
    on_ticket = (await world.upload(samples.png())).json()["id"]
    unattached = (await world.upload(samples.pdf(), "f.pdf", ticket=None)).json()["id"]
    cases = [
        (world.token("shop-a", "owner"), 200, 200),
        (world.token("shop-a", "employee"), 200, 200),  # the shop's users share its tickets
        (world.token("shop-b", "owner"), 403, 403),
        (world.token(role="agent", sub="agent-1"), 200, 200),
    ]
    for headers, ticket_status, unattached_status in cases:
        a = await world.client.get(f"/api/attachments/{on_ticket}", headers=headers)
        b = await world.client.get(f"/api/attachments/{unattached}", headers=headers)
        assert (a.status_code, b.status_code) == (ticket_status, unattached_status)
    assert (await world.client.get(f"/api/attachments/{on_ticket}")).status_code == 401
    missing = await world.client.get("/api/attachments/doesnotexist123", headers=world.token())
    assert (missing.status_code, _error(missing)["code"]) == (404, "not_found")
    for probe in ("..%2F..%2Fpomoc.db", "..", "%2e%2e", "a" * 65):
        traversal = await world.client.get(f"/api/attachments/{probe}", headers=world.token())
        assert traversal.status_code == 404
    sneaky = await world.client.post("/api/tickets/..%2F..%2Fetc/attachments", headers=world.token(),
                                     files={"file": ("a.png", samples.png())})
    assert sneaky.status_code == 404


async def test_signed_links(world: World) -> None:
    attachment_id = (await world.upload(samples.pdf(), "f.pdf")).json()["id"]
    link = world.store.link(attachment_id, world.clock.now())
    ok = await world.client.get(link)
    assert ok.status_code == 200 and ok.content == samples.pdf()
    assert ok.headers["content-disposition"].startswith("attachment;")
    assert ok.headers["content-security-policy"] == "default-src 'none'; sandbox"

    other = (await world.upload(samples.png(), "g.png")).json()["id"]
    swapped = link.replace(attachment_id, other)
    assert (await world.client.get(swapped)).status_code == 401
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert (await world.client.get(tampered)).status_code == 401
    no_sig = link.split("&sig=")[0]
    assert (await world.client.get(no_sig)).status_code == 401

    world.clock.advance(timedelta(minutes=9, seconds=59))
    assert (await world.client.get(link)).status_code == 200
    world.clock.advance(timedelta(seconds=2))
    expired = await world.client.get(link)
    assert (expired.status_code, _error(expired)["code"]) == (401, "unauthorized")


async def test_head_request_and_missing_content(world: World) -> None:
    attachment_id = (await world.upload(samples.png())).json()["id"]
    head = await world.client.head(f"/api/attachments/{attachment_id}", headers=world.token())
    assert head.status_code == 200 and head.headers["content-length"] == str(len(samples.png()))
    world.store.path(await world.store.get(attachment_id)).unlink()
    gone = await world.client.get(f"/api/attachments/{attachment_id}", headers=world.token())
    assert gone.status_code == 404


# ---------------------------------------------------------------- attaching

async def test_attach_binds_uploads_to_a_message(world: World) -> None:
    ids = [(await world.upload(samples.png(), f"{i}.png", ticket=None)).json()["id"] for i in range(2)]
    entries = await world.store.attach(ids, world.tickets["a1"], world.messages["a1.1"], customer(), NOW)
    assert [e["id"] for e in entries] == ids
    assert set(entries[0]) == {"id", "name", "content_type", "size", "url"}
    # The url works without a token (an <img src>), for ten minutes.
    assert (await world.client.get(entries[0]["url"])).status_code == 200
    # Idempotent: the same send retried.
    again = await world.store.attach(ids, world.tickets["a1"], world.messages["a1.1"], customer(), NOW)
    assert [e["id"] for e in again] == ids
    stored = await world.store.get(ids[0])
    assert (stored.ticket_id, stored.message_id) == (world.tickets["a1"], world.messages["a1.1"])
    listed = await world.store.for_messages([world.messages["a1.1"], world.messages["a1.2"]], NOW)
    assert [e["id"] for e in listed[world.messages["a1.1"]]] == ids
    assert world.messages["a1.2"] not in listed


async def test_attach_refusals(world: World) -> None:
    mine = (await world.upload(samples.png(), ticket=None)).json()["id"]
    on_a1 = (await world.upload(samples.png())).json()["id"]
    colleague = (await world.upload(samples.png(), ticket=None,
                                    headers=world.token("shop-a", "employee"))).json()["id"]
    a1, m1, m2 = world.tickets["a1"], world.messages["a1.1"], world.messages["a1.2"]
    with pytest.raises(Forbidden):  # another user's upload
        await world.store.attach([colleague], a1, m1, customer(), NOW)
    with pytest.raises(Forbidden):  # uploaded to another ticket
        await world.store.attach([on_a1], world.tickets["a2"], world.messages["a2.1"], customer(), NOW)
    with pytest.raises(Forbidden):  # a ticket of another shop
        await world.store.attach([mine], world.tickets["b1"], world.messages["b1.1"], customer(), NOW)
    with pytest.raises(NotFound):
        await world.store.attach(["doesnotexist123"], a1, m1, customer(), NOW)
    with pytest.raises(BadRequest):
        await world.store.attach([f"id{i:010d}" for i in range(MAX_PER_MESSAGE + 1)], a1, m1, customer(), NOW)
    with pytest.raises(BadRequest):
        await world.store.attach("not-a-list", a1, m1, customer(), NOW)  # type: ignore[arg-type]
    # Nothing was attached by the refusals; a mixed batch attaches nothing either.
    with pytest.raises(Forbidden):
        await world.store.attach([mine, colleague], a1, m1, customer(), NOW)
    assert (await world.store.get(mine)).message_id is None
    await world.store.attach([mine], a1, m1, customer(), NOW)
    with pytest.raises(Forbidden):  # already carried by another message
        await world.store.attach([mine], a1, m2, customer(), NOW)


async def test_attach_caps_files_per_message_across_calls(world: World) -> None:
    ids = [(await world.upload(samples.text_log(), f"{i}.log", ticket=None)).json()["id"]
           for i in range(MAX_PER_MESSAGE + 1)]
    a1, m1 = world.tickets["a1"], world.messages["a1.1"]
    await world.store.attach(ids[:MAX_PER_MESSAGE], a1, m1, customer(), NOW)
    with pytest.raises(BadRequest):
        await world.store.attach(ids[MAX_PER_MESSAGE:], a1, m1, customer(), NOW)
    assert (await world.store.get(ids[-1])).message_id is None


async def test_attach_joins_the_callers_transaction(world: World) -> None:
    upload = (await world.upload(samples.png(), ticket=None)).json()["id"]
    async with world.engine.connect() as conn:
        await conn.begin()
        await world.store.attach([upload], world.tickets["a1"], world.messages["a1.1"], customer(), NOW, conn=conn)
        await conn.rollback()
    assert (await world.store.get(upload)).message_id is None


# ------------------------------------------------------------------ purging

async def test_purge_keeps_content_shared_with_other_tickets(world: World) -> None:
    shared = samples.png()
    a1 = (await world.upload(shared, ticket="a1")).json()["id"]
    a2 = (await world.upload(shared, ticket="a2")).json()["id"]
    only_a1 = (await world.upload(samples.pdf(), "f.pdf", ticket="a1")).json()["id"]
    path = world.store.path(await world.store.get(a1))
    pdf_path = world.store.path(await world.store.get(only_a1))

    assert await world.store.purge_tickets([world.tickets["a1"]]) == 1
    assert path.is_file() and not pdf_path.exists()
    with pytest.raises(NotFound):
        await world.store.get(a1)
    assert (await world.client.get(f"/api/attachments/{a2}", headers=world.token())).status_code == 200

    assert await world.store.purge_tickets([world.tickets["a2"]]) == 1
    assert not path.exists()
    assert await world.store.purge_tickets([world.tickets["a2"]]) == 0


async def test_purge_unsent_and_sweep_orphans(world: World) -> None:
    draft = (await world.upload(samples.gif(), "d.gif", ticket=None)).json()["id"]
    sent = (await world.upload(samples.webp(), "s.webp", ticket=None)).json()["id"]
    await world.store.attach([sent], world.tickets["a1"], world.messages["a1.1"], customer(), NOW)
    assert await world.store.purge_unsent(NOW - timedelta(hours=1)) == 0
    assert await world.store.purge_unsent(NOW + timedelta(seconds=1)) == 1
    with pytest.raises(NotFound):
        await world.store.get(draft)
    sent_path = world.store.path(await world.store.get(sent))
    # A ticket deleted without purge_tickets: the cascade drops the row, the file stays
    # until the sweep.
    async with world.engine.begin() as conn:
        await conn.execute(tickets.delete().where(tickets.c.id == world.tickets["a1"]))
    with pytest.raises(NotFound):
        await world.store.get(sent)
    assert sent_path.is_file()
    assert await world.store.sweep_orphans(NOW) == 1
    assert not sent_path.exists()


@pytest.fixture(autouse=True)
def _no_stray_files(tmp_path: Path) -> Iterator[None]:
    yield
    assert not (tmp_path.parent / "etc").exists()
