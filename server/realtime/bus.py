"""Fan-out between server nodes over Redis pub/sub.

One subscriber connection per node. A node subscribes to a channel when its first
local connection needs it and drops it when the last one leaves. The bus carries
bytes: `publish(channel, payload)` sends to Redis for the other nodes, and every
payload arriving from Redis goes to the `deliver(channel, payload)` it was built
with (the node's router, `server.realtime.router`, which knows the envelope, drops
the node's own events coming back and hands the rest to the local connections).

When the subscriber connection breaks (Redis restarted, network cut) the bus
reconnects with capped backoff, re-subscribes every channel its listeners need and
then lets `returned()` waiters go, so the connections can fetch from the database
what they missed meanwhile. What is *not* guaranteed: delivery of events published
while Redis was unreachable — messages are recovered from the database by sequence
number; typing and presence events are simply lost, which is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], None]
_SUBSCRIBE_WAIT = 5.0
_PING_EVERY = 10.0
_DEAD_AFTER = 25.0


class Bus:
    def __init__(self, redis: Redis, subscriber: Redis, deliver: Deliver) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self._deliver = deliver
        # The channels wanted: a plain set, so thousands of idle connections' channels
        # cost one entry each.
        self._channels: set[str] = set()
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._returned = asyncio.Event()
        self.published = 0
        self.publish_failures = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------ subscribing
    async def subscribe(self, channel: str) -> None:
        """Want `channel`; returns once Redis confirmed the subscription (or at once
        while Redis is unreachable: the reconnect will subscribe)."""
        self._channels.add(channel)
        if channel in self._confirmed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        if len(self._waiters[channel]) == 1 and self._pubsub is not None and self.connected:
            try:
                await self._pubsub.subscribe(channel)
            except (RedisError, OSError) as exc:
                log.warning("bus.subscribe_failed", extra={"channel": channel, "error": repr(exc)})
                self._forget_waiter(channel, waiter)
                return
        if not self.connected:
            self._forget_waiter(channel, waiter)
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), _SUBSCRIBE_WAIT)
        except TimeoutError:
            log.warning("bus.subscribe_slow", extra={"channel": channel})
        finally:
            self._forget_waiter(channel, waiter)

    def _forget_waiter(self, channel: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[channel]

    def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        self._confirmed.discard(channel)
        if self._pubsub is not None and self.connected:
            task = asyncio.get_running_loop().create_task(self._unsubscribe(channel))
            task.add_done_callback(_log_task_failure)

    async def _unsubscribe(self, channel: str) -> None:
        if channel in self._channels:  # wanted again meanwhile
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError, AttributeError):
            pass  # the reconnect path only re-subscribes channels still listened to

    # ------------------------------------------------------------- publishing
    async def publish(self, channel: str, payload: bytes) -> None:
        # Always try, even while this node's own subscriber is reconnecting: another
        # node may already be back and caught up, and would never hear of this event.
        # (If Redis is really down the attempt fails fast; the other nodes recover
        # messages from the database when they resubscribe.)
        try:
            await self._redis.publish(channel, payload)
            self.published += 1
        except (RedisError, OSError) as exc:
            self.publish_failures += 1
            log.warning("bus.publish_failed", extra={"channel": channel, "error": repr(exc)})

    async def returned(self) -> None:
        """Wait until the subscriber has reconnected after losing Redis and every
        channel is subscribed again (the connections should then catch up)."""
        await self._returned.wait()
        self._returned.clear()

    # ----------------------------------------------------------------- reader
    async def run(self) -> None:
        """The subscriber loop, with reconnects; runs until cancelled."""
        delay = 0.1
        first = True
        while not self._stopping:
            try:
                await self._connect()
                delay = 0.1
                if not first:
                    task = asyncio.get_running_loop().create_task(self._after_resubscribe())
                    task.add_done_callback(_log_task_failure)
                first = False
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self.connected:
                    log.warning("bus.disconnected", extra={"error": repr(exc)})
                else:
                    log.debug("bus.reconnect_failed", extra={"error": repr(exc)})
                first = False
            finally:
                self._connected.clear()
                self._confirmed.clear()
                await self._close_pubsub()
            # Capped exponential backoff with jitter: a restarted Redis is not
            # stampeded by every node at the same instant.
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def _after_resubscribe(self) -> None:
        # Wait until Redis confirmed every channel, so that nothing published from
        # here on is missed, then let the connections catch up from the database.
        deadline = time.monotonic() + _SUBSCRIBE_WAIT
        while time.monotonic() < deadline and self.connected and not self._channels <= self._confirmed:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending = next(iter(self._channels - self._confirmed))
            self._waiters.setdefault(pending, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            finally:
                self._forget_waiter(pending, waiter)
        log.info("bus.resubscribed", extra={"channels": len(self._channels)})
        self._returned.set()

    async def _connect(self) -> None:
        pubsub = self._subscriber.pubsub()
        await pubsub.ping()  # opens the connection; raises if Redis is unreachable
        self._pubsub = pubsub
        channels = list(self._channels)
        if channels:
            await pubsub.subscribe(*channels)
        self._connected.set()
        log.info("bus.connected", extra={"channels": len(channels)})

    async def _read(self) -> None:
        pubsub = self._pubsub
        last_seen = last_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_ping > _PING_EVERY:
                await pubsub.ping()
                last_ping = now
            if now - last_seen > _DEAD_AFTER:
                raise TimeoutError("no answer from Redis on the subscriber connection")
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            last_seen = time.monotonic()
            kind = message["type"]
            if kind == "message":
                try:
                    self._deliver(_text(message["channel"]), message["data"])
                except Exception:
                    log.exception("bus.listener_failed")
            elif kind == "subscribe":
                channel = _text(message["channel"])
                self._confirmed.add(channel)
                for waiter in self._waiters.pop(channel, []):
                    if not waiter.done():
                        waiter.set_result(None)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:  # closing a broken connection may fail in many ways; it is gone either way
                log.debug("bus.close_failed", exc_info=True)

    async def stop(self) -> None:
        self._stopping = True
        await self._close_pubsub()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("bus.task_failed", exc_info=task.exception())
