"""Two real nodes behind a real nginx running the documented configuration.

`docs/deploy/nginx.conf` is loaded as it is, with only its addresses, ports and paths
replaced (`tests/proxy.py`); the clients speak TLS to its HTTPS server block with a
throwaway self-signed certificate, exactly as browsers would. PostgreSQL only: SQLite
is not meant for two nodes.

The rolling restart follows docs/deploy.md step by step: SIGTERM node 1, start it
again, wait until it is ready and nginx routes to it again, then the same for node 2,
while a customer and an agent keep writing to each other. Each keeps several sends in
flight, reconnects through nginx whenever its socket closes, resumes from the highest
seq up to which it has seen everything, and resends what was never acknowledged with
the same client_id. Afterwards every acknowledged message must be in the database and
have reached the other side exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests import filesamples, services
from tests.conftest import unique
from tests.proxy import Nginx, tool
from tests.servers import ServerProcess, free_port
from tests.wsclient import Client

ORIGIN = "https://shop.example"  # one of server_env's POMOC_ALLOWED_ORIGINS
MiB = 1024 * 1024
WINDOW = 16  # sends in flight per peer
PACE = 0.01  # seconds between two new messages of one peer (the load, not synchronisation)


@pytest.fixture(scope="module")
def db_kind(postgres_schema: str) -> str:
    return "postgresql"


class Cluster:
    """Two web nodes on fixed ports (a restarted node comes back on its own port)."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.ports = (free_port(), free_port())
        self.nodes: list[ServerProcess | None] = [None, None]
        self.index_of_pid: dict[int, int] = {}

    def start(self, index: int) -> ServerProcess:
        node = ServerProcess(dict(self.env), port=self.ports[index], log_path=self.tmp / f"node{index + 1}.log")
        node.start(timeout=60)
        assert node.proc is not None
        self.nodes[index] = node
        self.index_of_pid[node.proc.pid] = index
        return node

    def node(self, index: int) -> ServerProcess:
        node = self.nodes[index]
        assert node is not None
        return node

    def pid_of(self, conn_id: str) -> int:
        # conn_id = "<hostname>-<pid>-<random>:<random>" (server/app.py running_node, Node.new_conn_id)
        return int(conn_id.rsplit(":", 1)[0].rsplit("-", 2)[1])

    def index_of(self, conn_id: str) -> int:
        return self.index_of_pid[self.pid_of(conn_id)]

    def stop(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop()

    def logs(self) -> str:
        return "\n".join(f"--- node{i + 1}.log\n" + (self.tmp / f"node{i + 1}.log").read_text(errors="replace")[-3000:]
                         for i in range(2) if (self.tmp / f"node{i + 1}.log").exists())


@pytest.fixture(scope="module")
def cluster(server_env: dict[str, str]) -> Iterator[Cluster]:
    tool("nginx"), tool("openssl")  # skip (or fail in CI) before starting anything
    tmp = Path(server_env["POMOC_TMP"])
    # Uploads on storage every node sees (here simply one directory of this machine).
    env = {**server_env, "POMOC_ATTACHMENTS_DIR": str(tmp / "attachments")}
    nodes = Cluster(env, tmp)
    try:
        nodes.start(0)
        nodes.start(1)
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def nginx(cluster: Cluster) -> Iterator[Nginx]:
    proxy = Nginx(cluster.tmp / "nginx", cluster.ports)
    proxy.start()
    yield proxy
    proxy.stop()


async def open_ws(nginx: Nginx, origin: str | None = ORIGIN) -> ClientConnection:
    return await connect(nginx.wss, ssl=nginx.ssl_context(), subprotocols=["pomoc.v1.json"],  # type: ignore[list-item]
                         additional_headers={"Origin": origin} if origin else None, max_size=None,
                         open_timeout=10, close_timeout=2)


# ---------------------------------------------------------------- pass-through


def pdf_of_size(size: int) -> bytes:
    """A valid PDF of exactly `size` bytes (padding in its catalogue; the offsets grow with it)."""
    pad = size - len(filesamples.pdf())
    while len(data := filesamples.pdf(b" " * pad)) != size:
        pad -= len(data) - size
    return data


async def test_websocket_and_http_pass_through_the_documented_nginx(cluster, nginx, clients, tokens, shop):
    customer = Client(await open_ws(nginx))
    clients.append(customer)
    welcome = await customer.hello(tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Płatności", "severity": "major",
                                      "body": "Klienci nie mogą zapłacić.", "client_id": "open"}, "ticket"))["ticket"]
    agent = Client(await open_ws(nginx))
    clients.append(agent)
    agent_welcome = await agent.hello(tokens.agent(unique("agent")))
    # least_conn: with one socket open on a node, the next one goes to the other node,
    # so the conversation below crosses nodes through Redis.
    assert cluster.index_of(welcome["conn_id"]) != cluster.index_of(agent_welcome["conn_id"])
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Już sprawdzam", "client_id": "a1"},
                              "ack")
    assert (await customer.expect("message", seq=ack["seq"]))["body"] == "Już sprawdzam"
    ack = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Dziękuję", "client_id": "c1"},
                                 "ack")
    assert (await agent.expect("message", seq=ack["seq"]))["body"] == "Dziękuję"

    # A browser Origin that is not allowed is refused before the upgrade, and nginx
    # passes the refusal on (a 403 is not a reason to try the other node).
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(nginx, origin="https://evil.example")
    assert refused.value.response.status_code == 403

    auth = {"Authorization": f"Bearer {tokens.customer(shop)}"}
    async with httpx.AsyncClient(verify=nginx.ssl_context(), timeout=30) as http:
        plain = await http.get(f"{nginx.http}/agent?demo=1")
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://127.0.0.1/agent?demo=1"
        health = await http.get(f"{nginx.https}/healthz")
        assert health.status_code == 200 and health.text == "ok"
        assert health.headers["strict-transport-security"] == "max-age=31536000"
        # Metrics are for the private network: not on the public name, on the node itself.
        assert (await http.get(f"{nginx.https}/metrics")).status_code == 404
        assert (await http.get(f"{cluster.node(0).http}/metrics")).status_code == 200

        # A 10 MiB upload (the node's limit) passes nginx's body limit...
        data = pdf_of_size(10 * MiB)
        uploaded = await http.post(f"{nginx.https}/api/tickets/{ticket['id']}/attachments", headers=auth,
                                   files={"file": ("faktura.pdf", data, "application/pdf")})
        assert uploaded.status_code == 201, uploaded.text
        attachment = uploaded.json()
        assert attachment["size"] == 10 * MiB
        # ...and is stored where every node reads it.
        for index in (0, 1):
            got = await http.get(f"{cluster.node(index).http}/api/attachments/{attachment['id']}", headers=auth)
            assert got.status_code == 200 and got.content == data, index
        # A bigger one is refused with 413 (by nginx or by the node), never a 502 or a hang.
        too_big = await http.post(f"{nginx.https}/api/tickets/{ticket['id']}/attachments", headers=auth,
                                  files={"file": ("big.pdf", data + b" " * MiB, "application/pdf")})
        assert too_big.status_code == 413


# ---------------------------------------------------------------- rolling restart


@dataclass
class Session:
    node: int
    conn_id: str
    opened_at: float
    close_code: int | None = None
    closed_at: float | None = None


@dataclass
class Peer:
    """One side of the conversation, chatting through every restart (see the module doc)."""

    name: str
    kind: str  # the author kind its messages carry: "customer" or "agent"
    token: str
    ticket: int
    cursor: int  # every seq up to here was seen (as a message or as an own ack): resume from it
    nginx: Nginx
    cluster: Cluster
    sending: bool = True
    closing: bool = False
    seen: set[int] = field(default_factory=set)  # seen seqs above the cursor
    received: list[dict[str, Any]] = field(default_factory=list)  # every message frame of the ticket
    sent: list[str] = field(default_factory=list)  # client ids, in the order first sent
    bodies: dict[str, str] = field(default_factory=dict)
    unacked: dict[str, str] = field(default_factory=dict)  # insertion order = send order
    acked: dict[str, int] = field(default_factory=dict)
    resent: int = 0
    repeated_acks: int = 0
    sessions: list[Session] = field(default_factory=list)
    failed_connects: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    retries: set[asyncio.Task[None]] = field(default_factory=set)
    ws: ClientConnection | None = None

    async def run(self) -> None:
        attempt = 0
        while not self.closing:
            try:
                ws = await open_ws(self.nginx)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.failed_connects.append(f"{time.monotonic():.3f} {exc!r}")
                attempt += 1
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))  # reconnect backoff, as the widget does
                continue
            attempt = 0
            self.ws = ws
            try:
                await self._session(ws)
            finally:
                self.ws = None
                await ws.close()

    async def _session(self, ws: ClientConnection) -> None:
        hello = {"type": "hello", "token": self.token, "resume": {str(self.ticket): self.cursor}, "ref": "hello"}
        await ws.send(json.dumps(hello))
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 15))
        except (ConnectionClosed, TimeoutError) as exc:
            self.failed_connects.append(f"{time.monotonic():.3f} no welcome: {exc!r}")
            return
        if welcome.get("type") != "welcome":
            self.failed_connects.append(f"{time.monotonic():.3f} {welcome}")
            return
        if welcome.get("resume_incomplete"):
            self.anomalies.append(f"resume_incomplete {welcome['resume_incomplete']}")
        session = Session(self.cluster.index_of(welcome["conn_id"]), welcome["conn_id"], time.monotonic())
        self.sessions.append(session)
        self.progress.set()
        sender = asyncio.ensure_future(self._send_loop(ws))
        try:
            async for raw in ws:
                self._on(ws, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            session.close_code = ws.close_code if ws.close_code is not None else 1006
            session.closed_at = time.monotonic()
            self.progress.set()

    async def _send_loop(self, ws: ClientConnection) -> None:
        try:
            for client_id, body in list(self.unacked.items()):  # never acknowledged: again, same client_id
                self.resent += 1
                await self._send(ws, client_id, body)
            while self.sending:
                if len(self.unacked) < WINDOW:
                    client_id = f"{self.name}-{len(self.sent) + 1}"
                    body = f"{self.name} {len(self.sent) + 1}"
                    self.sent.append(client_id)
                    self.bodies[client_id] = body
                    self.unacked[client_id] = body
                    await self._send(ws, client_id, body)
                await asyncio.sleep(PACE)
        except ConnectionClosed:
            pass  # what was not acknowledged goes again on the next connection

    async def _send(self, ws: ClientConnection, client_id: str, body: str) -> None:
        await ws.send(json.dumps({"type": "send", "ticket": self.ticket, "body": body, "client_id": client_id,
                                  "ref": client_id}))

    def _on(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message" and frame.get("ticket") == self.ticket:
            self.received.append(frame)
            self._saw(frame["seq"])
        elif kind == "ack" and frame.get("ticket") == self.ticket:
            client_id, seq = frame["client_id"], frame["seq"]
            if client_id in self.acked:
                self.repeated_acks += 1
                if self.acked[client_id] != seq:
                    self.anomalies.append(f"{client_id} acked as {self.acked[client_id]} and as {seq}")
            else:
                self.acked[client_id] = seq
            self.unacked.pop(client_id, None)
            self._saw(seq)
        elif kind == "error":
            self.errors.append(frame)
            client_id = frame.get("ref")
            if client_id in self.unacked:
                task = asyncio.ensure_future(self._retry(ws, client_id))
                self.retries.add(task)
                task.add_done_callback(self.retries.discard)
        self.progress.set()

    async def _retry(self, ws: ClientConnection, client_id: str) -> None:
        await asyncio.sleep(0.2)  # retry backoff after an `unavailable`, not synchronisation
        if client_id in self.unacked and self.ws is ws:
            self.resent += 1
            try:
                await self._send(ws, client_id, self.unacked[client_id])
            except ConnectionClosed:
                pass

    def _saw(self, seq: int) -> None:
        if seq <= self.cursor:
            return
        self.seen.add(seq)
        while self.cursor + 1 in self.seen:
            self.cursor += 1
            self.seen.discard(self.cursor)

    def from_(self, other: Peer) -> list[dict[str, Any]]:
        return [f for f in self.received if f["author"]["kind"] == other.kind]

    def status(self) -> str:
        return (f"{self.name}: sent {len(self.sent)} acked {len(self.acked)} unacked {len(self.unacked)} "
                f"received {len(self.received)} cursor {self.cursor} sessions "
                f"{[(s.node + 1, s.close_code) for s in self.sessions]} failed connects {len(self.failed_connects)}")


async def until(what: str, condition: Callable[[], bool], peers: list[Peer], timeout: float) -> None:
    """Wait until `condition()` holds, re-checking whenever a peer makes progress."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"{what}: not within {timeout} s\n" + "\n".join(p.status() for p in peers))
        waiters = [asyncio.ensure_future(p.progress.wait()) for p in peers]
        await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        for peer in peers:
            peer.progress.clear()


async def flowing(peers: list[Peer], more: int = 15, timeout: float = 60) -> None:
    """Each peer gets `more` acks and `more` messages of the other side beyond now."""
    a, b = peers
    goal = {p.name: (len(p.acked) + more, len(p.from_(q)) + more) for p, q in ((a, b), (b, a))}
    await until(f"{more} more messages both ways",
                lambda: all(len(p.acked) >= goal[p.name][0] and len(p.from_(q)) >= goal[p.name][1]
                            for p, q in ((a, b), (b, a))), peers, timeout)


async def routed_to(nginx: Nginx, cluster: Cluster, index: int, token: str, timeout: float = 30) -> float:
    """Open short connections through nginx until one lands on node `index` (nginx has
    it back in rotation); returns how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < timeout:
        try:
            async with await open_ws(nginx) as ws:
                await ws.send(json.dumps({"type": "hello", "token": token, "feed": False}))
                welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if welcome.get("type") == "welcome" and cluster.index_of(welcome["conn_id"]) == index:
                return loop.time() - started
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError, KeyError):
            pass
        await asyncio.sleep(0.25)  # polling nginx's view of the node, bounded by the timeout
    raise AssertionError(f"nginx did not route to node {index + 1} within {timeout} s")


async def stored_messages(server_env: dict[str, str], ticket: int) -> list[asyncpg.Record]:
    url = services.POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url, server_settings={"search_path": server_env["POMOC_DATABASE_SCHEMA"]})
    try:
        return await conn.fetch("SELECT seq, author_kind, author_id, client_id, body FROM messages "
                                "WHERE ticket_id = $1 ORDER BY seq", ticket)
    finally:
        await conn.close()


@pytest.mark.timeout(300)
async def test_rolling_restart_behind_nginx_loses_no_acknowledged_message(cluster, nginx, server_env, tokens, shop):
    opener = Client(await open_ws(nginx))
    await opener.hello(tokens.customer(shop))
    opened = await opener.request({"type": "open_ticket", "title": "Zwroty", "severity": "major",
                                   "body": "Zwrot nie wrócił na kartę.", "client_id": "open"}, "ticket")
    ticket = opened["ticket"]["id"]
    start = opened["ticket"]["last_seq"]
    await opener.close()

    agent_id = unique("agent")
    peers = [Peer("customer", "customer", tokens.customer(shop), ticket, start, nginx, cluster),
             Peer("agent", "agent", tokens.agent(agent_id, "Anna"), ticket, start, nginx, cluster)]
    customer, agent = peers
    probe = tokens.agent(unique("probe"), "Sonda")
    tasks = [asyncio.ensure_future(p.run()) for p in peers]
    timings: dict[str, float] = {}
    try:
        await until("both connected", lambda: all(p.sessions for p in peers), peers, 30)
        # least_conn put them on different nodes: the chat crosses nodes through Redis.
        assert customer.sessions[0].node != agent.sessions[0].node
        await flowing(peers)

        began = time.monotonic()
        for index in (0, 1):
            node = cluster.node(index)
            t0 = time.monotonic()
            code = await asyncio.to_thread(node.stop, signal.SIGTERM, 30.0)
            assert code == 0, cluster.logs()
            timings[f"node{index + 1}_stop_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            await asyncio.to_thread(cluster.start, index)
            timings[f"node{index + 1}_start_s"] = time.monotonic() - t0
            timings[f"node{index + 1}_back_in_nginx_s"] = await routed_to(nginx, cluster, index, probe)
            # Both sides were moved off the stopped node and keep talking.
            await flowing(peers)
        timings["rolling_restart_s"] = time.monotonic() - began

        for peer in peers:
            peer.sending = False
        await until("every message acknowledged", lambda: not customer.unacked and not agent.unacked, peers, 60)
        await until("every acknowledged message delivered to the other side",
                    lambda: {f["client_id"] for f in agent.from_(customer)} >= customer.acked.keys()
                    and {f["client_id"] for f in customer.from_(agent)} >= agent.acked.keys(), peers, 60)
    finally:
        for peer in peers:
            peer.closing = True
            peer.sending = False
            for task in tuple(peer.retries):
                task.cancel()
            if peer.ws is not None:
                await peer.ws.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)

    summary = {
        "timings": {k: round(v, 2) for k, v in timings.items()},
        **{p.name: {"sent": len(p.sent), "acked": len(p.acked), "resent": p.resent,
                    "repeated_acks": p.repeated_acks, "received": len(p.received),
                    "sessions": [(s.node + 1, s.close_code) for s in p.sessions],
                    "failed_connects": p.failed_connects, "errors": p.errors[:5]} for p in peers},
    }
    print("rolling restart:", json.dumps(summary))

    for peer, other in ((customer, agent), (agent, customer)):
        assert not peer.anomalies, peer.anomalies
        # Moved by the restarts: every socket but the last ended with 1001 (going away),
        # and the peer came back through nginx and resumed each time.
        codes = [s.close_code for s in peer.sessions]
        assert codes[:-1] == [1001] * (len(codes) - 1), codes
        assert len(peer.sessions) >= 2, peer.status()
        # ...on the other node each time, at the first attempt: nginx passed the refused
        # connection on to the node still running (proxy_next_upstream).
        nodes = [s.node for s in peer.sessions]
        assert all(a != b for a, b in zip(nodes, nodes[1:], strict=False)), nodes
        assert not peer.failed_connects, peer.failed_connects
        # Every message frame once, in order (a resume replays only what was missed).
        seqs = [f["seq"] for f in peer.received]
        assert seqs == sorted(set(seqs)), "duplicated or out of order"
        # Each acknowledged message of the other side arrived, with the seq it was acked with.
        got = {f["client_id"]: f["seq"] for f in peer.from_(other)}
        assert {cid: got.get(cid) for cid in other.acked} == other.acked
        # Nothing in between was skipped either.
        last = max(seqs[-1], max(peer.acked.values()))
        assert set(range(start + 1, last + 1)) <= set(seqs) | set(peer.acked.values())
        # One connection's sends keep their order, retries included.
        order = [peer.acked[cid] for cid in peer.sent]
        assert order == sorted(order)

    rows = await stored_messages(server_env, ticket)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "gapless seqs in the database"
    by_seq = {r["seq"]: r for r in rows}
    for peer in peers:
        for client_id, seq in peer.acked.items():
            row = by_seq[seq]
            assert (row["author_kind"], row["client_id"], row["body"]) == (peer.kind, client_id,
                                                                          peer.bodies[client_id])
        stored = [r for r in rows if r["author_kind"] == peer.kind and r["client_id"] in peer.bodies]
        assert len(stored) == len(peer.sent) == len(peer.acked), "each message stored once, none lost"
