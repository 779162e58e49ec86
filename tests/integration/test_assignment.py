"""Agents and assignment against real server processes (PostgreSQL and SQLite, real
Redis): the assignee must be a known agent; with POMOC_AUTO_ASSIGN new tickets go to
the least loaded online agent within capacity, exactly once even when two nodes
assign at once; the assignee hears `assigned` at once and finds it in "Moje"
(`list_tickets assignee: "me"`); a ticket nobody may take waits in the pool for the
jobs; an offline assignee's tickets return to the pool after the release time (the
jobs at an injected instant)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests import services
from tests.conftest import Tokens, _drop_schema, database_env, migrate, unique
from tests.mailing import run_jobs
from tests.servers import ServerProcess
from tests.wsclient import Client, join

CLOCK = services.WORKING_CLOCK  # a Wednesday, 10:00 in Warsaw: nothing is held for working hours


class Cluster:
    """Nodes on a database and a Redis prefix of their own (assignment counts every
    open ticket of the database and every agent online under the prefix)."""

    def __init__(self, server_env: dict[str, str], tmp: Path, db_kind: str) -> None:
        self.schema = f"{services.PG_SCHEMA}_as_{uuid.uuid4().hex[:6]}" if db_kind == "postgresql" else None
        self.env = {**server_env, **database_env(db_kind, tmp, self.schema),
                    "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:",
                    "POMOC_AUTO_ASSIGN": "on", "POMOC_JOBS_IN_WEB": "false", "POMOC_CLOCK": CLOCK}
        self.tmp = tmp
        self.nodes: list[ServerProcess] = []
        migrate(self.env)

    def start(self, count: int = 1, **extra: str) -> list[ServerProcess]:
        started = [ServerProcess({**self.env, **extra}, log_path=self.tmp / f"node-{len(self.nodes) + i}.log").start()
                   for i in range(count)]
        self.nodes += started
        return started

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)
        if self.schema:
            _drop_schema(self.schema)


@pytest.fixture
def cluster(server_env: dict[str, str], db_kind: str, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(server_env, tmp_path, db_kind)
    yield made
    made.stop()


async def online(node: ServerProcess, clients: list, tokens: Tokens, agent: str, **claims: object) -> Client:
    """An agent's console, once presence has it online (the welcome comes first)."""
    console, _ = await join(node, clients, tokens.agent(agent, name=agent.split("-")[0].title(), **claims))
    await console.expect("presence", agent=agent, status="online")
    return console


async def open_ticket(customer: Client, title: str = "Płatności Przelewy24") -> dict:
    reply = await customer.request({"type": "open_ticket", "title": title, "body": "Płatność nie przechodzi",
                                    "client_id": uuid.uuid4().hex}, "ticket")
    assert reply["type"] == "ticket", reply
    return reply["ticket"]


async def mine(console: Client) -> list[dict]:
    listed = await console.request({"type": "list_tickets", "assignee": "me", "limit": 100}, "tickets")
    assert listed["type"] == "tickets", listed
    return listed["tickets"]


def told(console: Client) -> list[int]:
    return [f["ticket"]["id"] for f in console.pending("assigned")]


async def told_of(console: Client, count: int) -> list[dict]:
    return [await console.expect("assigned") for _ in range(count)]


async def told_everyone(consoles: list[Client], total: int, timeout: float = 20.0) -> list[list[dict]]:
    """The `assigned` frames of every console until `total` arrived between them."""
    heard: list[list[dict]] = [[] for _ in consoles]

    async def collect() -> None:
        while sum(map(len, heard)) < total:
            for i, console in enumerate(consoles):
                frames = console.pending("assigned")
                heard[i] += frames
                console.frames = [f for f in console.frames if f.get("type") != "assigned"]
            if sum(map(len, heard)) < total:
                waits = [asyncio.ensure_future(c.expect("assigned", timeout=timeout)) for c in consoles]
                done, rest = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in rest:
                    w.cancel()
                for i, w in enumerate(waits):
                    if w in done and not w.cancelled() and w.exception() is None:
                        heard[i].append(w.result())

    await asyncio.wait_for(collect(), timeout)
    return heard


async def test_twenty_new_tickets_spread_over_three_online_agents_each_assigned_once(cluster, clients, tokens):
    a, b = cluster.start(2)
    names = [unique("anna"), unique("bartek"), unique("celina")]
    consoles = [await online(node, clients, tokens, agent) for node, agent in zip((a, b, a), names, strict=True)]
    shops = [unique("shop") for _ in range(4)]
    customers = [(await join(node, clients, tokens.customer(shop)))[0] for node, shop in zip((a, b, a, b), shops,
                                                                                             strict=True)]
    # Twenty at once, from both nodes: each node assigns the ones opened on it.
    opened = await asyncio.gather(*(open_ticket(customers[i % 4]) for i in range(20)))
    ids = sorted(t["id"] for t in opened)
    assert len(set(ids)) == 20

    # Each assignee hears of each of its tickets at once (the customer's reply goes first).
    frames = await told_everyone(consoles, 20)
    lists: dict[str, list[int]] = {}
    for agent, console, heard in zip(names, consoles, frames, strict=True):
        listed = await mine(console)
        lists[agent] = sorted(t["id"] for t in listed)
        assert all(t["assignee"] == agent for t in listed)
        assert sorted(f["ticket"]["id"] for f in heard) == lists[agent]
        assert all(f["by"]["kind"] == "system" and f["ticket"]["assignee"] == agent for f in heard)
    everyone = sorted(i for got in lists.values() for i in got)
    assert everyone == ids, "every ticket assigned, to exactly one agent"
    counts = sorted(len(got) for got in lists.values())
    assert counts == [6, 7, 7], f"fewest open tickets first: an even spread within capacity, got {counts}"
    # The thread records it privately; the customer's view of the ticket names the assignee only.
    first = opened[0]["id"]
    owner = next(agent for agent, got in lists.items() if first in got)
    page = await consoles[names.index(owner)].request({"type": "history", "ticket": first}, "history")
    (note,) = [m for m in page["messages"] if "przypisane do" in m["body"]]
    assert note["internal"] is True and note["author"]["kind"] == "system" and owner in note["body"]
    shown = await customers[0].request({"type": "history", "ticket": first}, "history")
    assert not [m for m in shown["messages"] if "przypisane" in m["body"]]
    # Nothing was told twice.
    await asyncio.sleep(0)
    assert not any(told(console) for console in consoles)


async def test_two_nodes_assigning_at_once_never_exceed_capacity_and_the_pool_waits(cluster, clients, tokens):
    a, b = cluster.start(2, POMOC_AGENT_CAPACITY="3")
    names = [unique("anna"), unique("bartek")]
    consoles = [await online(a, clients, tokens, names[0]), await online(b, clients, tokens, names[1])]
    customers = [(await join(node, clients, tokens.customer(unique("shop"))))[0] for node in (a, b, a, b)]
    opened = await asyncio.gather(*(open_ticket(customers[i % 4]) for i in range(10)))
    await told_everyone(consoles, 6)
    lists = {agent: await mine(console) for agent, console in zip(names, consoles, strict=True)}
    assert sorted(len(v) for v in lists.values()) == [3, 3], "capacity 3 each, whichever node assigned"
    taken = {t["id"] for v in lists.values() for t in v}
    assert len(taken) == 6
    pool = sorted(t["id"] for t in opened if t["id"] not in taken)
    assert len(pool) == 4
    # The pool job finds nobody with room: nothing changes.
    done = await run_jobs(a, datetime.fromisoformat(CLOCK) + timedelta(minutes=1))
    assert done["assign.pool"] == 0
    # Anna resolves one: the next pool round gives her the most urgent waiting ticket.
    resolved = lists[names[0]][0]["id"]
    await consoles[0].request({"type": "update_ticket", "ticket": resolved, "status": "resolved"}, "ticket")
    done = await run_jobs(a, datetime.fromisoformat(CLOCK) + timedelta(minutes=2))
    assert done["assign.pool"] == 1
    (frame,) = await told_of(consoles[0], 1)
    assert frame["ticket"]["id"] in pool and frame["ticket"]["assignee"] == names[0]
    assert len(await mine(consoles[0])) == 3


async def test_the_assignee_must_be_a_known_agent(cluster, clients, tokens):
    (node,) = cluster.start(1, POMOC_AUTO_ASSIGN="off")
    anna, bartek = unique("anna"), unique("bartek")
    console = await online(node, clients, tokens, anna)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket = await open_ticket(customer)
    assert ticket["assignee"] is None, "auto-assignment is off"
    refused = await console.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": bartek}, "ticket")
    assert refused["type"] == "error" and refused["code"] == "bad_request", refused
    assert "'assignee'" in refused["message"]
    # Once Bartek has signed in, he is one of the team.
    other = await online(node, clients, tokens, bartek, departments=["shipping"])
    changed = await console.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": bartek}, "ticket")
    assert changed["type"] == "ticket" and changed["ticket"]["assignee"] == bartek
    # He hears of it at once, from Anna; she is not told of her own doing.
    frame = await other.expect("assigned")
    assert frame["ticket"]["id"] == ticket["id"] and frame["by"] == {"kind": "agent", "id": anna, "name": "Anna"}
    assert [t["id"] for t in await mine(other)] == [ticket["id"]]
    assert await mine(console) == []
    # Taking it herself tells nobody; null releases it.
    await console.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": anna}, "ticket")
    released = await console.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": None}, "ticket")
    assert released["ticket"]["assignee"] is None
    assert not told(console)
    # "Moje" of someone else by id works for agents; the customer's list ignores the filter.
    listed = await customer.request({"type": "list_tickets", "assignee": "me"}, "tickets")
    assert [t["id"] for t in listed["tickets"]] == [ticket["id"]]


async def test_an_offline_assignees_tickets_return_to_the_pool_after_the_release_time(cluster, clients, tokens):
    (node,) = cluster.start(1)
    start = datetime.fromisoformat(CLOCK)
    anna, celina, bartek = unique("anna"), unique("celina"), unique("bartek")
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    first_console = await online(node, clients, tokens, anna)
    mine_a = await open_ticket(customer)
    await first_console.expect("assigned", where=lambda f: f["ticket"]["id"] == mine_a["id"])
    keeper = await online(node, clients, tokens, celina)
    kept = await open_ticket(customer)
    await keeper.expect("assigned", where=lambda f: f["ticket"]["id"] == kept["id"])
    # Anna goes; Celina stays (and takes nothing more: she is away); Bartek is online.
    await keeper.send({"type": "presence", "status": "away"})
    await keeper.expect("presence", agent=celina, status="away")
    await first_console.close()
    await keeper.expect("presence", agent=anna, status="offline")
    newcomer = await online(node, clients, tokens, bartek)
    # Within the release time nothing moves.
    done = await run_jobs(node, start + timedelta(minutes=10))
    assert done["assign.release"] == 0 and done["assign.pool"] == 0
    # Past it, Anna's ticket returns to the pool and goes to Bartek, who is online.
    done = await run_jobs(node, start + timedelta(minutes=16))
    assert done["assign.release"] == 1 and done["assign.pool"] == 1
    frame = await newcomer.expect("assigned")
    assert frame["ticket"]["id"] == mine_a["id"] and frame["ticket"]["assignee"] == bartek
    page = await newcomer.request({"type": "history", "ticket": mine_a["id"]}, "history")
    notes = [m for m in page["messages"] if m["author"]["kind"] == "system" and m.get("internal")]
    assert len(notes) == 3, [m["body"] for m in notes]  # assigned to Anna, released, assigned to Bartek
    assert anna in notes[1]["body"] and "puli" in notes[1]["body"]
    # Celina was away the whole time, never offline: hers stays.
    assert [t["id"] for t in await mine(keeper)] == [kept["id"]]
    assert not told(keeper)
