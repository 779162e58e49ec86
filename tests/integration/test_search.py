"""The `search` frame with real clients, in both modes: embedded (SQLite and the
in-process Redis stand-in) and Redis + PostgreSQL. An agent finds tickets by folded
words across shops and narrows by shop, status and department; a customer finds
only its own shop's; bad frames get `bad_request` naming the field and the
connection goes on. Each test writes a word of its own, so tests sharing a server
do not see each other's tickets."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests import services
from tests.conftest import Tokens, database_env, migrate, unique
from tests.servers import ROOT, ServerProcess
from tests.wsclient import join


@pytest.fixture(scope="module", params=["embedded", "postgresql"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp(f"search-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POMOC_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"PYTHONPATH": str(ROOT), "POMOC_SECRET": services.SECRET, "POMOC_CLOCK": services.WORKING_CLOCK,
                "POMOC_LOG_LEVEL": "INFO", "POMOC_TMP": str(tmp), "POMOC_RATE_SHOP_TICKETS": "off",
                "POMOC_RATE_USER_MESSAGES": "off", "POMOC_RATE_SHOP_MESSAGES": "off"})
    schema = None
    if request.param == "postgresql":
        services.require("Redis", services.REDIS_URL)
        services.require("PostgreSQL", services.POSTGRES_URL)
        request.getfixturevalue("postgres_schema")
        schema = f"{services.PG_SCHEMA}_search_{uuid.uuid4().hex[:6]}"
        env.update(database_env("postgresql", tmp, schema))
        env.update({"REDIS_URL": services.REDIS_URL, "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}search:"})
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'pomoc.db'}"  # no REDIS_URL: the in-process stand-in
    migrate(env)
    proc = ServerProcess(env, cwd=tmp, log_path=tmp / "server.log").start(inherit_env=False)
    yield proc
    proc.stop()
    if schema:
        from tests.conftest import _drop_schema

        _drop_schema(schema)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


def marker() -> str:
    return "zn" + uuid.uuid4().hex[:8].replace("-", "")


async def open_ticket(node, clients, tokens, shop: str, title: str, body: str) -> dict:
    customer, _ = await join(node, clients, tokens.customer(shop))
    reply = await customer.request({"type": "open_ticket", "title": title, "body": body, "severity": "minor",
                                    "client_id": uuid.uuid4().hex}, "ticket")
    return reply["ticket"]


async def search(client, **frame) -> dict:
    return await client.request({"type": "search", **frame}, "search")


async def test_an_agent_finds_folded_words_across_shops_and_narrows_by_filters(node, clients, tokens):
    word = marker()
    shop_a, shop_b = unique("shop"), unique("shop")
    one = await open_ticket(node, clients, tokens, shop_a, "Płatność Przelewy24",
                            f"Od rana płatność przez Przelewy24 nie przechodzi ({word}).")
    two = await open_ticket(node, clients, tokens, shop_b, "Pytanie",
                            f"PLATNOSC przelewy24 wraca z bledem, {word}")
    three = await open_ticket(node, clients, tokens, shop_b, "Paczkomat InPost",
                              f"Paczkomat nie widać w koszyku {word}")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))

    found = await search(agent, q=f"platnosc przelewy24 {word}")
    assert [r["ticket"]["id"] for r in found["results"]] == [two["id"], one["id"]]  # newest first
    assert all(r["seq"] == 1 for r in found["results"])
    assert "PLATNOSC przelewy24" in found["results"][0]["snippet"]
    assert "context" in found["results"][0]["ticket"]  # an agent's view of the ticket

    both_ways = await search(agent, q=f"PŁATNOŚĆ {word}")
    assert {r["ticket"]["id"] for r in both_ways["results"]} == {one["id"], two["id"]}
    assert [r["ticket"]["id"] for r in (await search(agent, q=f"{word} platnosc", shop=shop_a))["results"]] == [
        one["id"]]
    assert [r["ticket"]["id"] for r in (await search(agent, q=word, department="shipping"))["results"]] == [
        three["id"]]
    assert [r["ticket"]["id"] for r in (await search(agent, q=word, limit=1))["results"]] == [three["id"]]

    await agent.request({"type": "update_ticket", "ticket": one["id"], "status": "resolved"}, "ticket")
    resolved = await search(agent, q=word, status="resolved")
    assert [r["ticket"]["id"] for r in resolved["results"]] == [one["id"]]
    assert (await search(agent, q=word, status="closed"))["results"] == []

    # An agent's reply is found at its seq; a title alone at seq null.
    sent = await agent.request({"type": "send", "ticket": three["id"], "body": f"Sprawdzamy kurierów {word}x2",
                                "client_id": uuid.uuid4().hex}, "ack")
    reply = await search(agent, q=f"kurierow {word}x2")
    assert [(r["ticket"]["id"], r["seq"]) for r in reply["results"]] == [(three["id"], sent["seq"])]
    title = await search(agent, q=f"inpost paczkomat {word}")
    assert title["results"] == []  # every word: the title has no marker, the message no "inpost"
    by_title = await search(agent, q="Paczkomat InPost", shop=shop_b)
    assert [(r["ticket"]["id"], r["seq"]) for r in by_title["results"]] == [(three["id"], None)]


async def test_a_customer_finds_only_its_own_shops_tickets(node, clients, tokens):
    word = marker()
    mine, theirs = unique("shop"), unique("shop")
    own = await open_ticket(node, clients, tokens, mine, "Faktura korygująca", f"Nie mogę wystawić korekty {word}")
    await open_ticket(node, clients, tokens, theirs, "Faktura korygująca", f"Korekta faktury nie działa {word}")
    customer, _ = await join(node, clients, tokens.customer(mine, sub="colleague"))

    found = await search(customer, q=word)
    assert [r["ticket"]["id"] for r in found["results"]] == [own["id"]]
    view = found["results"][0]["ticket"]
    assert view["shop"] == mine and "context" not in view and "shop_record" not in view
    same = await search(customer, q=word, shop=mine)
    assert [r["ticket"]["id"] for r in same["results"]] == [own["id"]]
    refused = await customer.request({"type": "search", "q": word, "shop": theirs}, "search")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert (await customer.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_a_customer_never_finds_a_private_note_an_agent_does(node, clients, tokens):
    word, shop = marker(), unique("shop")
    ticket = await open_ticket(node, clients, tokens, shop, "Zwrot towaru", "Klient chce zwrot")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": f"Sprawdzić {word} w panelu",
                               "internal": True}, "ack")
    assert ack["type"] == "ack"
    found = await search(agent, q=word)
    assert [(r["ticket"]["id"], r["seq"]) for r in found["results"]] == [(ticket["id"], ack["seq"])]
    customer, _ = await join(node, clients, tokens.customer(shop, sub="owner"))
    assert (await search(customer, q=word))["results"] == []


@pytest.mark.parametrize(("frame", "field"), [
    ({}, "q"), ({"q": 7}, "q"), ({"q": ""}, "q"), ({"q": "a"}, "q"), ({"q": "x" * 201}, "q"),
    ({"q": "ok", "status": "bogus"}, "status"), ({"q": "ok", "limit": 0}, "limit"), ({"q": "ok", "limit": 51}, "limit"),
    ({"q": "ok", "limit": "20"}, "limit"), ({"q": "ok", "department": "nowhere"}, "department"),
    ({"q": "ok", "shop": ""}, "shop"),
])
async def test_a_bad_search_is_refused_naming_the_field_and_the_connection_stays(node, clients, tokens, frame,
                                                                                  field):
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    reply = await agent.request({"type": "search", **frame}, "search")
    assert reply["type"] == "error" and reply["code"] == "bad_request", reply
    assert f"'{field}'" in reply["message"]
    assert (await agent.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_on_postgresql_the_worker_indexes_what_the_web_node_stored(node, clients, tokens, tmp_path, request):
    """The web node stores and answers; the words are folded by the worker (a web
    node's event loop never folds a batch of long messages)."""
    if "DATABASE_URL" not in node.env or not node.env["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("SQLite's triggers index in the writing transaction")
    import asyncio

    from sqlalchemy import text

    from server.settings import Settings
    from server.store.db import create_engine
    from tests.servers import free_port

    word = marker()
    ticket = await open_ticket(node, clients, tokens, unique("shop"), "Faktura", f"Faktura {word} nie przyszła")
    engine = create_engine(Settings.from_env(node.env))

    async def indexed() -> bool:
        async with engine.connect() as conn:
            return bool((await conn.execute(text(
                "SELECT count(*) FROM search_documents d JOIN messages m ON m.id = d.message_id "
                "WHERE m.ticket_id = :t"), {"t": ticket["id"]})).scalar())

    worker: ServerProcess | None = None
    try:
        # Found at once all the same: messages past the indexer's cursor are matched directly.
        agent, _ = await join(node, clients, tokens.agent(unique("a")))
        assert [r["ticket"]["id"] for r in (await search(agent, q=word))["results"]] == [ticket["id"]]
        assert not await indexed(), "a web node without the jobs indexes nothing"
        port = free_port()
        worker = ServerProcess({**node.env, "POMOC_WORKER_METRICS_PORT": str(port), "HOST": "127.0.0.1"},
                               port=port, args=["worker"], cwd=tmp_path, log_path=tmp_path / "worker.log")
        worker.start(inherit_env=False)
        deadline = asyncio.get_running_loop().time() + 30
        while not await indexed():
            assert asyncio.get_running_loop().time() < deadline, "the worker indexed nothing in 30 s"
            await asyncio.sleep(0.1)  # polling another process's commit, bounded by the deadline
        assert [r["ticket"]["id"] for r in (await search(agent, q=word))["results"]] == [ticket["id"]]
    finally:
        await engine.dispose()
        if worker is not None:
            assert worker.stop() == 0
            assert "Traceback" not in worker.log(), worker.log()[-3000:]
