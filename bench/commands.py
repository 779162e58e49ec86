"""The command client's scripts: CPU per call through redis-py against Pomoc's own connection.

    .venv/bin/python bench/commands.py                 # 20,000 calls each way, 3 rounds
    .venv/bin/python bench/commands.py --calls 50000 --rounds 5
    .venv/bin/python bench/commands.py --smoke

A node's Redis traffic is mostly Lua scripts, called alone (a hello's book, a rate
limit) or in pipelines (a flight of arrivals or leavings, `run_script_many`). This
tool calls a small script (`INCR` on a private key, the key and a 60-byte argument
as a node's scripts get them) `--calls` times, `--concurrency` (64) callers at once,
through `server.realtime.clients.GuardedRedis` as a node builds it: once without its
direct connection (every call through redis-py's pool, packer and parser) and once
with it (`server.realtime.commands`). Then the same in pipelines of 16 calls. Printed:
this process's CPU per call, the median over `--rounds` (the ways alternate, so a
change in the machine's load hits both), and the calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import add_service_args, cpu_seconds, use_uvloop  # noqa: E402

# Components measured alone, inside this process (the other tools treat the server as a black box).
from server.realtime.clients import GuardedRedis, run_script_many  # noqa: E402
from server.realtime.commands import DirectCommands  # noqa: E402
from server.realtime.health import RedisHealth  # noqa: E402

SCRIPT = "return redis.call('INCR', KEYS[1]) + string.len(ARGV[1])"
ARGUMENT = "x" * 60
PIPELINE = 16


def client(url: str, direct: bool) -> GuardedRedis:
    return GuardedRedis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5),
                        health=RedisHealth(5.0), direct=DirectCommands(url, 5.0) if direct else None)


async def run(redis: GuardedRedis, key: str, calls: int, concurrency: int, batched: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for `calls` script calls."""
    script = redis.register_script(SCRIPT)
    await script(keys=[key], args=[ARGUMENT])  # loaded, connections open
    per_caller = calls // concurrency

    async def caller() -> None:
        if batched:
            for _ in range(per_caller // PIPELINE):
                await run_script_many(redis, script, [([key], [ARGUMENT])] * PIPELINE)
        else:
            for _ in range(per_caller):
                await script(keys=[key], args=[ARGUMENT])

    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return cpu_seconds() - cpu, time.perf_counter() - wall


async def close(redis: GuardedRedis) -> None:
    await redis.aclose()  # its direct connection too
    await redis.connection_pool.disconnect()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p)  # the common options; this tool uses --redis only (no server, no database)
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="1,024 calls, 1 round")
    args = p.parse_args()
    if args.smoke:
        args.calls, args.rounds = 1_024, 1
    calls = args.calls // (args.concurrency * PIPELINE) * args.concurrency * PIPELINE
    key = f"pbench-commands-{uuid.uuid4().hex[:8]}:n"
    ways = {"redis-py": False, "direct": True}
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {(w, b): [] for w in ways for b in (False, True)}
    try:
        for _ in range(args.rounds):
            for batched in (False, True):
                for name, direct in ways.items():
                    redis = client(args.redis, direct)
                    try:
                        results[(name, batched)].append(await run(redis, key, calls, args.concurrency, batched))
                    finally:
                        await close(redis)
    finally:
        cleaner: Any = aioredis.Redis.from_url(args.redis)
        await cleaner.delete(key)
        await cleaner.aclose()
    print(f"commands: {calls:,} script calls per way, {args.concurrency} callers at once, {args.rounds} round(s), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    for batched in (False, True):
        label = f"pipelines of {PIPELINE}" if batched else "one call each"
        for name in ways:
            runs = results[(name, batched)]
            per = [cpu / calls * 1e6 for cpu, _ in runs]
            rate = statistics.median(calls / wall for _, wall in runs)
            print(f"  {label:17} {name:9} {statistics.median(per):5.1f} µs CPU per call "
                  f"(rounds: {', '.join(f'{v:.1f}' for v in per)}), {rate:,.0f} calls/s")


if __name__ == "__main__":
    use_uvloop()
    asyncio.run(main())
