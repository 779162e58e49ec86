"""Handshakes against a real server process: every socket is answered or closed in
bounded time, and sockets that never say hello cannot keep real users out.

The server runs with a 3 s handshake timeout, room for 200 connections, a budget of
100 connections yet to say hello (10 per client address). Client sockets are bound
to loopback addresses 127.0.0.x / 127.0.1.x (Linux routes all of 127/8 to `lo`), so
one test process can be many clients. Figures are printed (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from tests import services
from tests.conftest import Tokens, database_env, migrate, unique
from tests.servers import ServerProcess, open_fds
from tests.wsclient import Client

HANDSHAKE_TIMEOUT = 3.0
MARGIN = 10.0  # on top of a bound, for a loaded 2-core machine
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_head(extra: bytes = b"", target: bytes = b"/ws", end: bool = True) -> bytes:
    head = (b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: pomoc.v1.json\r\n" + extra)
    return head + b"\r\n" if end else head


@pytest.fixture(scope="module", autouse=True)
def _descriptors() -> None:
    # This process holds a thousand sockets at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


def start_server(redis_url: str, tmp: Path, **extra: str) -> ServerProcess:
    env = {
        **database_env("sqlite", tmp),
        "REDIS_URL": redis_url,
        "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{unique('hs')}:",
        "POMOC_SECRET": services.SECRET,
        "POMOC_CLOCK": services.WORKING_CLOCK,
        "POMOC_LOG_LEVEL": "INFO",
        "POMOC_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
        "POMOC_MAX_CONNECTIONS": "200",
        "POMOC_MAX_PENDING": "100",
        "POMOC_MAX_PENDING_PER_ADDRESS": "10",
        **extra,
    }
    migrate(env)
    return ServerProcess(env, log_path=tmp / "server.log").start()


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(redis_url, tmp_path_factory.mktemp("pomoc-handshakes"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def h11_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(redis_url, tmp_path_factory.mktemp("pomoc-handshakes-h11"), POMOC_UVICORN_HTTP="h11",
                        POMOC_UVICORN_WS="websockets")
    yield proc
    proc.stop()


@pytest.fixture(params=["default stack", "h11 + websockets"])
def any_server(request: pytest.FixtureRequest) -> ServerProcess:
    """The bound on request heads holds whichever HTTP implementation parses them."""
    return request.getfixturevalue("server" if request.param == "default stack" else "h11_server")


async def quiet(server: ServerProcess, baseline: int, timeout: float = 20.0) -> int:
    """Poll the server's descriptors until they are back near `baseline` (or the deadline)."""
    deadline = time.monotonic() + timeout
    fds = open_fds(server.pid)
    while fds > baseline + 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # polling another process's state, bounded by the deadline
        fds = open_fds(server.pid)
    return fds


@pytest.fixture(scope="module")
def rest_fds(server: ServerProcess) -> int:
    return open_fds(server.pid)


@pytest.fixture
async def baseline(server: ServerProcess, rest_fds: int) -> int:
    """The server's descriptors once what an earlier test left has closed."""
    return await quiet(server, rest_fds)


@dataclass
class Outcome:
    status: int | None = None  # the HTTP status the server answered, if any
    closed_after: float | None = None  # seconds from the last byte sent to the server's EOF or reset


async def answer_of(reader: asyncio.StreamReader, sent_at: float, timeout: float) -> Outcome:
    """Read until the server closes: what it answered, and when it closed."""
    outcome = Outcome()
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    except TimeoutError:
        return _status(outcome, received)
    outcome.closed_after = time.monotonic() - sent_at
    return _status(outcome, received)


def _status(outcome: Outcome, received: bytes) -> Outcome:
    if received.startswith(b"HTTP/1.1 "):
        outcome.status = int(received[9:12])
    return outcome


async def probe(port: int, data: bytes, timeout: float, local: str | None = None) -> Outcome:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0) if local else None)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.drain()
        return await answer_of(reader, time.monotonic(), timeout)
    finally:
        writer.close()


# ------------------------------------------------------------------ oversized heads
@pytest.mark.parametrize("data,status", [
    (upgrade_head(b"X-Big: " + b"a" * 9_000, end=False), 431),  # the line never ends
    (upgrade_head(b"X-Big: " + b"a" * 70_000, end=False), 431),
    (upgrade_head(b"X-Big: " + b"a" * 70_000 + b"\r\n"), 431),  # a complete head, one line of 70 KB
    (upgrade_head(b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(80)), end=False), 431),  # 80 KB
    (upgrade_head(target=b"/ws?" + b"q" * 9_000, end=False), 414),
], ids=["9k-line-unfinished", "70k-line-unfinished", "70k-line-complete", "80k-head", "9k-request-line"])
async def test_an_oversized_head_is_answered_and_closed_at_once(any_server, data, status):
    outcome = await probe(any_server.port, data, timeout=HANDSHAKE_TIMEOUT + MARGIN)
    print(f"\n{len(data)} bytes → {outcome.status}, closed after {outcome.closed_after}")
    assert outcome.status == status
    assert outcome.closed_after is not None, "the server never closed the socket"
    # Well before the handshake timeout: the answer is the size, not a 408.
    assert outcome.closed_after < HANDSHAKE_TIMEOUT


async def test_a_stalled_head_gets_408_after_the_handshake_timeout(any_server):
    outcome = await probe(any_server.port, b"GET /ws HTT", timeout=HANDSHAKE_TIMEOUT + MARGIN)
    assert outcome.status == 408 and outcome.closed_after is not None
    assert HANDSHAKE_TIMEOUT - 0.5 < outcome.closed_after < HANDSHAKE_TIMEOUT + MARGIN


async def test_the_bound_leaves_normal_traffic_alone(any_server, tokens, shop, clients):
    client = await Client.connect(any_server.url)
    clients.append(client)
    await client.hello(tokens.customer(shop))
    outcome = await probe(any_server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
    assert outcome.status == 200
    # A body is not a head: one 20 KB line of it is not refused as too large.
    body = b"x" * 20_000
    outcome = await probe(any_server.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body), timeout=10)
    assert outcome.status == 405


async def test_the_next_request_on_a_kept_alive_connection_is_bounded_too(any_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", any_server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await asyncio.wait_for(reader.readexactly(length), 10)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        outcome = await answer_of(reader, time.monotonic(), HANDSHAKE_TIMEOUT + MARGIN)
    finally:
        writer.close()
    assert outcome.status == 408 and outcome.closed_after is not None


# ------------------------------------------------------------------ a thousand slow handshakes
async def test_a_thousand_slow_or_oversized_handshakes_are_all_closed_in_bounded_time(server, baseline):
    kinds = (["partial request line"] * 400 + ["partial head"] * 200 + ["oversized line, unfinished"] * 200
             + ["oversized line"] * 200)
    payloads = {
        "partial request line": b"GET /ws HT",
        "partial head": upgrade_head(end=False)[:-2],
        "oversized line, unfinished": upgrade_head(b"X-Big: " + b"a" * 9_000, end=False),
        "oversized line": upgrade_head(b"Cookie: " + b"c" * 20_000 + b"\r\n"),
    }
    samples: list[tuple[float, int]] = []
    sampling = True

    async def sample() -> None:
        # Until everything is closed, and at least until a second after the bound of the last socket.
        while sampling or not last_sent or time.monotonic() < last_sent + HANDSHAKE_TIMEOUT + 1.2:
            samples.append((time.monotonic(), open_fds(server.pid)))
            await asyncio.sleep(0.05)  # a sampler, not a synchronization

    sampler = asyncio.ensure_future(sample())
    gate = asyncio.Semaphore(200)  # connects in flight
    opened = asyncio.Event()
    count = 0
    last_sent = 0.0

    async def one(kind: str, i: int) -> tuple[str, Outcome]:
        nonlocal count, last_sent
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                           local_addr=(f"127.0.2.{i % 250 + 1}", 0))
            writer.write(payloads[kind])
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await writer.drain()
        sent = time.monotonic()
        last_sent = max(last_sent, sent)
        count += 1
        if count == len(kinds):
            opened.set()
        try:
            return kind, await answer_of(reader, sent, HANDSHAKE_TIMEOUT + MARGIN)
        finally:
            writer.close()

    started = time.monotonic()
    results = await asyncio.gather(*(one(kind, i) for i, kind in enumerate(kinds)))
    all_done = time.monotonic()
    after = await quiet(server, baseline)
    sampling = False
    await sampler
    peak = max(fds for _, fds in samples)
    # What the server still held a second after the bound (all in the client's hands by then on the old code).
    at_bound = next((fds for t, fds in samples if t >= last_sent + HANDSHAKE_TIMEOUT + 1.0), None)
    statuses = Counter((kind, o.status) for kind, o in results)
    unclosed = [kind for kind, o in results if o.closed_after is None]
    worst = max((o.closed_after for _, o in results if o.closed_after is not None), default=None)
    print(f"\n1,000 slow/oversized handshakes: server fds baseline {baseline}, peak {peak}, a second after the bound "
          f"{at_bound}, after {after}; "
          f"all sent within {last_sent - started:.2f} s; every socket closed {all_done - last_sent:.2f} s after the "
          f"last one was sent (slowest {worst} s after its own bytes); answers {dict(statuses)}; "
          f"never closed by the server: {len(unclosed)}")
    assert not unclosed, f"{len(unclosed)} sockets never answered nor closed: {Counter(unclosed)}"
    assert worst is not None and worst < HANDSHAKE_TIMEOUT + MARGIN
    for kind, outcome in results:
        expected = 408 if kind.startswith("partial") else 431
        assert outcome.status == expected, (kind, outcome)
    assert after <= baseline + 10, f"{after} descriptors held after the bound (baseline {baseline})"


# ------------------------------------------------------------------ floods of sockets that never say hello
@dataclass
class Flood:
    peak: int = 0
    open: int = 0
    upgraded: int = 0
    answers: Counter[int] = field(default_factory=Counter)  # HTTP statuses other than 101
    closes: Counter[int] = field(default_factory=Counter)  # close codes the server sent
    errors: int = 0
    pressed: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self, hold: int) -> None:
        # The server is under pressure: the flood holds what it can, or is refused.
        if self.open >= hold or sum(self.answers.values()) + sum(self.closes.values()) >= 50:
            self.pressed.set()


async def never_hello(port: int, address: str, flood: Flood, hold: int) -> None:
    """Open upgrades that never say hello, one after the other, as fast as the server lets."""
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        except OSError:
            flood.errors += 1
            if flood.errors > 10_000:
                return
            continue
        try:
            writer.write(upgrade_head())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if status != 101:
                flood.answers[status] += 1
                flood.check(hold)
                continue
            flood.upgraded += 1
            flood.open += 1
            flood.peak = max(flood.peak, flood.open)
            flood.check(hold)
            try:
                data = await reader.read(64)  # a close frame, or the end
            finally:
                flood.open -= 1
            code = int.from_bytes(data[2:4], "big") if len(data) >= 4 and data[0] & 0x0F == 0x8 else 1006
            flood.closes[code] += 1
            flood.check(hold)
        except (OSError, asyncio.IncompleteReadError):
            flood.errors += 1
        finally:
            writer.close()


async def real_users(server: ServerProcess, tokens: Tokens, clients: list, n: int = 50) -> list[int | None]:
    """n users on their own addresses, each trying up to 3 times: the attempt that got
    `welcome`, or None."""
    shop = unique("shop")

    async def user(i: int) -> int | None:
        for attempt in range(1, 4):
            try:
                ws = await connect(server.url, subprotocols=["pomoc.v1.json"],  # type: ignore[list-item]
                                   local_addr=(f"127.0.1.{i + 1}", 0), open_timeout=15, close_timeout=2,
                                   max_size=None)
            except (InvalidStatus, OSError, TimeoutError):
                continue
            client = Client(ws)
            clients.append(client)
            try:
                await client.hello(tokens.customer(shop, sub=f"real-{i}"))
                return attempt
            except (AssertionError, ConnectionClosed):
                # Closed before welcome (1013: evicted to make room, possibly before this
                # loaded test process got to send its hello), or no answer in time.
                continue
        return None

    return list(await asyncio.gather(*(user(i) for i in range(n))))


@pytest.mark.parametrize("addresses,per_address", [(1, 300), (100, 8)], ids=["one-address", "100-addresses"])
async def test_real_users_get_in_during_a_flood_of_sockets_that_never_say_hello(
        server, baseline, tokens, clients, addresses, per_address):
    flood = Flood()
    hold = min(200, addresses * per_address)
    flooders = [asyncio.ensure_future(never_hello(server.port, f"127.0.0.{a + 2}", flood, hold))
                for a in range(addresses) for _ in range(per_address)]
    try:
        await asyncio.wait_for(flood.pressed.wait(), 30)
        held_before = flood.open
        started = time.monotonic()
        admitted = await real_users(server, tokens, clients)
        took = time.monotonic() - started
    finally:
        for task in flooders:
            task.cancel()
        await asyncio.gather(*flooders, return_exceptions=True)
    first = sum(1 for a in admitted if a == 1)
    got_in = sum(1 for a in admitted if a is not None)
    print(f"\nflood from {addresses} address(es), {addresses * per_address} sockets: held {held_before} when the "
          f"users came, peak {flood.peak}, upgraded {flood.upgraded}, refused {dict(flood.answers)}, closed "
          f"{dict(flood.closes)}, errors {flood.errors}; real users: {got_in}/50 got welcome ({first} at the first "
          f"attempt) in {took:.2f} s")
    assert got_in == 50, f"only {got_in} of 50 real users got in during the flood"
    if addresses == 1:
        assert flood.peak <= 10  # the address's budget of connections yet to say hello


# ------------------------------------------------------------------ invalid UTF-8
async def test_a_text_frame_that_is_not_utf8_closes_1007_without_a_traceback(server, clients):
    client = await Client.connect(server.url)
    clients.append(client)
    client.ws.protocol.send_frame(Frame(Opcode.TEXT, b"{\"type\": \"hello\", \"token\": \"\xff\xfe\"}"))
    client.ws.transport.write(b"".join(client.ws.protocol.data_to_send()))
    assert await client.wait_closed(10) == 1007
    log = server.log()
    assert "Traceback" not in log
    assert not [line for line in log.splitlines() if '"level": "error"' in line]


@pytest.mark.parametrize("codec", ["pomoc.v1.json", "pomoc.v1.msgpack"])
async def test_frames_queued_together_arrive_whole_in_order_and_of_their_codecs_kind(any_server, tokens, shop, codec):
    """The default stack writes a connection's queued frames in one go; uvicorn's own
    `websockets` stack frame by frame. Either way: every frame, in order, text for JSON,
    binary for MessagePack, non-ASCII intact."""
    import json

    import msgpack

    title = "Zażółć gęślą jaźń — zwrot"
    async with connect(any_server.url, subprotocols=[codec], max_size=None) as ws:  # type: ignore[list-item]
        binary = codec.endswith("msgpack")

        def encode(frame: dict) -> bytes | str:
            return msgpack.packb(frame) if binary else json.dumps(frame)

        async def next_frame() -> dict:
            raw = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(raw, bytes) is binary, f"a {'binary' if binary else 'text'} frame for {codec}"
            return msgpack.unpackb(raw) if binary else json.loads(raw)

        await ws.send(encode({"type": "hello", "token": tokens.customer(shop, sub=unique("q"))}))
        assert (await next_frame())["type"] == "welcome"
        await ws.send(encode({"type": "open_ticket", "title": title, "body": "Paczka nie dotarła.", "ref": "t"}))
        frame = await next_frame()
        while frame.get("ref") != "t":
            frame = await next_frame()
        assert frame["ticket"]["title"] == title
        # Forty requests in one write: the answers pile up in the outbox and leave together.
        ws.transport.write(b"".join(_frame_bytes(ws, encode({"type": "ping", "ref": f"p{n}"})) for n in range(40)))
        refs = []
        while len(refs) < 40:
            frame = await next_frame()
            if frame["type"] == "pong":
                refs.append(frame["ref"])
        assert refs == [f"p{n}" for n in range(40)]


def _frame_bytes(ws: object, data: bytes | str) -> bytes:
    protocol = ws.protocol  # type: ignore[attr-defined]
    if isinstance(data, str):
        protocol.send_text(data.encode())
    else:
        protocol.send_binary(data)
    return b"".join(protocol.data_to_send())
