"""Server stack: uvicorn's HTTP and WebSocket implementations side by side.

    .venv/bin/python bench/stack.py                  # every combination, 3 rounds, ~8 min
    .venv/bin/python bench/stack.py --http httptools --ws websockets-sansio,websockets --rounds 5
    .venv/bin/python bench/stack.py --smoke          # two combinations, tiny sizes

For each combination of `--http` (`POMOC_UVICORN_HTTP`) and `--ws`
(`POMOC_UVICORN_WS`) one server is started on the same fresh database, and:

1. **upgrades**: `--upgrades` (500) bare WebSocket upgrades (connect, 101, close;
   no hello), `--concurrency` (64) in flight: upgrades per second and the server's
   CPU per upgrade (until it is quiet again) — the HTTP parser, the WebSocket
   handshake, the endpoint's admission and the close, nothing else;
2. **hellos**: `--connections` (2,000) customers, each its own shop, connect + upgrade
   + `hello` → `welcome` (`_fastws.FastClient`, 4 loopback sources), held: hellos
   per second and the server's CPU per hello;
3. **idle RSS**: once the server is quiet, its RSS grown per held connection (KiB);
4. **throughput**: `--pingers` (16) of the held connections send `ping` requests
   in a closed loop, `--window` (16) in flight each, for `--seconds` (5): `pong`
   frames per second and the server's CPU per request (a WebSocket read and write
   each, the session's decode and dispatch, no database).

The combinations run interleaved, round after round, so a change in the machine's
load hits all of them alike; the table gives each figure's median over the rounds
and the load average seen. `wsproto` is used only if importable (PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Env,
    Server,
    add_service_args,
    log,
    mint,
    proc_cpu_seconds,
    proc_rss,
    raise_fd_limit,
    use_uvloop,
)
from _fastws import FastClient, sources  # noqa: E402

HTTP = ("httptools", "h11")
WS = ("websockets-sansio", "websockets", "wsproto")
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: pomoc.v1.json\r\n\r\n")


async def wait_quiet(pid: int, below: float = 0.05, hold_s: float = 1.0, limit_s: float = 20.0) -> None:
    t0 = time.monotonic()
    last = proc_cpu_seconds(pid)
    since: float | None = None
    while time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.25)  # sampling another process's CPU, not synchronization
        now = proc_cpu_seconds(pid)
        if (now - last) / 0.25 < below:
            since = since or time.monotonic()
            if time.monotonic() - since >= hold_s:
                return
        else:
            since = None
        last = now


async def upgrades(port: int, n: int, concurrency: int, src: list[str]) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(src[i % len(src)], 0))
            try:
                writer.write(UPGRADE)
                head = await reader.readuntil(b"\r\n\r\n")
                if head[9:12] != b"101":
                    raise RuntimeError(f"upgrade answered {head[:40]!r}")
            finally:
                writer.close()

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t)


async def one_combination(env: Env, http: str, ws: str, args: argparse.Namespace, src: list[str],
                          base: int) -> dict[str, Any]:
    server_env = {**env.server_env, "POMOC_UVICORN_HTTP": http, "POMOC_UVICORN_WS": ws,
                  "POMOC_MAX_CONNECTIONS": str(args.connections + 1000)}
    server = Server(f"{http}-{ws}", server_env, args.python, env.logdir)
    env.servers.append(server)
    server.start()
    held: list[FastClient] = []
    out: dict[str, Any] = {"http": http, "ws": ws, "load": os.getloadavg()[0]}
    try:
        warm = [FastClient(server.url) for _ in range(20)]
        await asyncio.gather(*(c.connect(mint(env.secret, "customer", f"warm-{i}", shop=f"warm-{i}"),
                                         source=src[0]) for i, c in enumerate(warm)))
        await asyncio.gather(*(c.close() for c in warm))
        await upgrades(server.port, 50, args.concurrency, src)
        await wait_quiet(server.pid)
        cpu0 = proc_cpu_seconds(server.pid)
        out["upgrades_per_s"] = await upgrades(server.port, args.upgrades, args.concurrency, src)
        await wait_quiet(server.pid)  # the closes are handled after the client is done
        out["cpu_us_per_upgrade"] = (proc_cpu_seconds(server.pid) - cpu0) / args.upgrades * 1e6
        rss0 = proc_rss(server.pid)

        gate = asyncio.Semaphore(args.concurrency)

        async def hello(i: int) -> None:
            c = FastClient(server.url)
            async with gate:
                await c.connect(mint(env.secret, "customer", f"bench-user-{base + i}", shop=f"bench-{base + i}"),
                                source=src[i % len(src)], timeout=60)
            held.append(c)

        cpu0 = proc_cpu_seconds(server.pid)
        t = time.perf_counter()
        await asyncio.gather(*(hello(i) for i in range(args.connections)))
        took = time.perf_counter() - t
        out["hellos_per_s"] = args.connections / took
        out["cpu_us_per_hello"] = (proc_cpu_seconds(server.pid) - cpu0) / args.connections * 1e6
        await wait_quiet(server.pid)
        out["kib_per_conn"] = (proc_rss(server.pid) - rss0) / 1024 / args.connections

        done = 0
        stop = time.perf_counter() + args.seconds

        async def pinger(c: FastClient) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await c.request({"type": "ping"}, timeout=30)
                done += 1

        cpu0 = proc_cpu_seconds(server.pid)
        t = time.perf_counter()
        await asyncio.gather(*(pinger(c) for c in held[:args.pingers] for _ in range(args.window)))
        took = time.perf_counter() - t
        out["pongs_per_s"] = done / took
        out["cpu_us_per_pong"] = (proc_cpu_seconds(server.pid) - cpu0) / max(1, done) * 1e6
        out["problems"] = len(server.log_problems())
    finally:
        await asyncio.gather(*(c.close() for c in held), return_exceptions=True)
        server.stop()
    return out


FIGURES = [("upgrades_per_s", "upgrades/s", "{:.0f}"), ("cpu_us_per_upgrade", "CPU µs/upgrade", "{:.0f}"),
           ("hellos_per_s", "hellos/s", "{:.0f}"),
           ("cpu_us_per_hello", "CPU µs/hello", "{:.0f}"), ("kib_per_conn", "KiB/idle conn", "{:.1f}"),
           ("pongs_per_s", "pongs/s", "{:.0f}"), ("cpu_us_per_pong", "CPU µs/pong", "{:.0f}")]


def report(results: list[dict[str, Any]]) -> None:
    combos = list(dict.fromkeys((r["http"], r["ws"]) for r in results))
    print("stack: medians over the rounds (each round's values in brackets)")
    print("| HTTP | WebSocket | " + " | ".join(label for _, label, _ in FIGURES) + " | load avg |")
    print("|---|---|" + "---|" * (len(FIGURES) + 1))
    for http, ws in combos:
        rows = [r for r in results if (r["http"], r["ws"]) == (http, ws)]
        cells = []
        for key, _, fmt in FIGURES:
            values = [r[key] for r in rows]
            cells.append(fmt.format(statistics.median(values)) + " (" + ", ".join(fmt.format(v) for v in values) + ")")
        load = statistics.median(r["load"] for r in rows)
        print(f"| {http} | {ws} | " + " | ".join(cells) + f" | {load:.2f} |")
    problems = sum(r.get("problems", 0) for r in results)
    print(f"server warnings/errors in the logs: {problems}")


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.http, args.ws = "httptools,h11", "websockets-sansio"
        args.rounds, args.connections, args.upgrades, args.seconds, args.pingers = 1, 50, 50, 0.5, 4
    raise_fd_limit()
    https = [h for h in args.http.split(",") if h]
    wss = [w for w in args.ws.split(",") if w]
    if "wsproto" in wss and importlib.util.find_spec("wsproto") is None:
        log("[stack] wsproto is not importable here: skipped (put it on PYTHONPATH to include it)")
        wss.remove("wsproto")
    src = sources(args.sources)
    env = Env(args, "stack")
    results: list[dict[str, Any]] = []
    try:
        await env.create()
        base = 0
        for round_ in range(1, args.rounds + 1):
            for http in https:
                for ws in wss:
                    log(f"[stack] round {round_}: {http} + {ws}")
                    result = await one_combination(env, http, ws, args, src, base)
                    base += args.connections
                    log(f"[stack]   {result}")
                    results.append(result)
    finally:
        with contextlib.suppress(Exception):
            await env.cleanup()
    report(results)
    return 0


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p, rate_limits="off")
    p.add_argument("--http", default=",".join(HTTP), help="HTTP implementations (default %(default)s)")
    p.add_argument("--ws", default=",".join(WS), help="WebSocket implementations (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every combination (default %(default)s)")
    p.add_argument("--connections", type=int, default=2000, help="customers held (default %(default)s)")
    p.add_argument("--upgrades", type=int, default=500, help="bare upgrades (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight (default %(default)s)")
    p.add_argument("--sources", type=int, default=4, help="loopback source addresses (default %(default)s)")
    p.add_argument("--pingers", type=int, default=16, help="connections sending pings (default %(default)s)")
    p.add_argument("--window", type=int, default=16, help="pings in flight per connection (default %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="ping phase (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="two combinations, tiny sizes")
    return p.parse_args()


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
