"""Whether shop users have a connection open now, as Redis counts them.

Every open connection of a reader is a field of its `conns:<reader>` hash holding the
instant it expires (`server.realtime.admission`), refreshed by its node's heartbeat
and removed when it closes; a killed node's fields simply expire. A reader is
online while any field is in the future. One pipelined round trip for any number
of readers. `now` is the real time (the expiries are stamped on it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from redis.asyncio import Redis

from server.realtime.keys import Keys


async def users_online(redis: Redis, keys: Keys, readers: Iterable[str], now: datetime) -> dict[str, bool]:
    """reader key → has a live connection. Raises the client's errors (Redis down)."""
    wanted = list(dict.fromkeys(readers))
    if not wanted:
        return {}
    moment = now.timestamp()
    async with redis.pipeline(transaction=False) as pipe:
        for reader in wanted:
            pipe.hvals(keys.connections(reader))
        found = await pipe.execute()
    return {reader: any(_alive(value, moment) for value in values) for reader, values in zip(wanted, found,
                                                                                              strict=True)}


def _alive(value: bytes | str, moment: float) -> bool:
    try:
        return float(value) > moment
    except (TypeError, ValueError):
        return False
