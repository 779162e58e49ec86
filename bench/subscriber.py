"""The bus's subscriber: CPU per delivered event, redis-py's PubSub against Pomoc's own.

    .venv/bin/python bench/subscriber.py                # 50,000 events of 300 bytes, 3 rounds
    .venv/bin/python bench/subscriber.py --events 200000 --rounds 5
    .venv/bin/python bench/subscriber.py --smoke

Every event a node delivers arrives on its one subscriber connection. A publisher
connection in this process pipelines `--events` PUBLISHes (500 per round trip) to a
channel of a private prefix on real Redis; a reader drains them the way the bus does
(`await pubsub.get_message(timeout=1.0)` until it has them all), once with redis-py's
`PubSub` (`Redis.from_url(...).pubsub()`, hiredis parser) and once with
`server.realtime.subscriber.RawPubSub`. The publishing alone is measured too and
taken off: printed is this process's CPU per event spent receiving, per reader, the
median over `--rounds` (the two alternate, so a change in the machine's load hits both).
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

# A component measured alone, inside this process (the other tools treat the server as a black box).
from server.realtime.subscriber import RawSubscriber  # noqa: E402

PAYLOAD = b"x" * 300


async def publish(url: str, channel: str, events: int) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for start in range(0, events, 500):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(min(500, events - start)):
                    pipe.publish(channel, PAYLOAD)
                await pipe.execute()
    finally:
        await client.aclose()


async def drain(pubsub: Any, url: str, channel: str, events: int) -> float:
    """Seconds of this process's CPU to publish and receive `events`."""
    await pubsub.subscribe(channel)
    while True:
        message = await pubsub.get_message(timeout=5.0)
        if message is not None and message["type"] == "subscribe":
            break
    started = cpu_seconds()
    sender = asyncio.ensure_future(publish(url, channel, events))
    got = 0
    while got < events:
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            got += 1
    await sender
    spent = cpu_seconds() - started
    await pubsub.aclose()
    return spent


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_args(p)  # the common options; this tool uses --redis only (no server, no database)
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="2,000 events, 1 round")
    args = p.parse_args()
    if args.smoke:
        args.events, args.rounds = 2_000, 1
    prefix = f"pbench-subscriber-{uuid.uuid4().hex[:8]}:"
    results: dict[str, list[float]] = {"publishing alone": [], "redis-py PubSub": [], "Pomoc RawPubSub": []}
    for n in range(args.rounds):
        started = cpu_seconds()
        await publish(args.redis, f"{prefix}nobody", args.events)
        results["publishing alone"].append(cpu_seconds() - started)
        redis_py = aioredis.Redis.from_url(args.redis, socket_timeout=None)
        results["redis-py PubSub"].append(await drain(redis_py.pubsub(), args.redis, f"{prefix}a{n}", args.events))
        await redis_py.aclose()
        raw = RawSubscriber(args.redis, 5.0)
        results["Pomoc RawPubSub"].append(await drain(raw.pubsub(), args.redis, f"{prefix}b{n}", args.events))
    alone = statistics.median(results["publishing alone"])
    print(f"subscriber: {args.events:,} events of {len(PAYLOAD)} B, {args.rounds} round(s), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"  publishing alone: {alone / args.events * 1e6:.1f} µs CPU per event (taken off below)")
    for name in ("redis-py PubSub", "Pomoc RawPubSub"):
        per = [(x - alone) / args.events * 1e6 for x in results[name]]
        rounds = ", ".join(f"{v:.1f}" for v in per)
        print(f"  {name:16} receiving: {statistics.median(per):5.1f} µs CPU per event (rounds: {rounds})")


if __name__ == "__main__":
    use_uvloop()
    asyncio.run(main())
