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
what they missed meanwhile. A Redis that hangs instead (stopped, stalled) breaks
nothing visibly, so the subscriber pings it every second and counts the connection
gone when nothing came back for a few seconds. Connecting, subscribing and pinging
all have the deadline of every Redis call (`POMOC_REDIS_TIMEOUT`), and a hello
waits for its subscriptions' confirmation no longer than that.

Publishing goes through a script that refuses to publish once Redis's clock is past
the call's deadline (`server.realtime.health`): a publish that timed out is not
carried out later when a hanging Redis wakes, and `publish` answers False, so the
caller can keep the event and publish it again, in order, once Redis is back (see
`server.chat.announce`). What the bus alone does *not* guarantee: delivery of events
published while Redis was unreachable — messages are recovered from the database by
sequence number; typing and presence events are simply lost, which is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.batching import Coalesced
from server.realtime.deadline import Deadline
from server.realtime.health import LATE, RedisHealth
from server.realtime.subscriber import RawSubscriber

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], None]
_RESUBSCRIBE_WAIT = 5.0  # for every channel's confirmation after a reconnect, before the catch-up
_PING_EVERY = 1.0
_SUBSCRIBE_BATCH = 500  # channels one SUBSCRIBE names at most
_REDIS_DOWN = (RedisError, OSError)  # OSError: the builtin TimeoutError of a deadline too

# ARGV: deadline (ms, Redis's clock), then channel, payload pairs. Returns how many
# were published, or -1 when started past the deadline (none).
_PUBLISH = LATE + """
if late(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return (#ARGV - 1) / 2
"""


class Bus:
    def __init__(self, redis: Redis, subscriber: Redis | RawSubscriber, deliver: Deliver, health: RedisHealth
                 ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self._deliver = deliver
        self.health = health
        self._timeout = health.timeout
        # Nothing back on the subscriber connection for this long (pings go every second): gone.
        self._dead_after = _PING_EVERY + 2 * self._timeout + 1.0
        self._publish = redis.register_script(_PUBLISH)
        self._suspect = False  # a write to the subscriber connection failed: make a new one
        # The channels wanted: a plain set, so thousands of idle connections' channels
        # cost one entry each.
        self._channels: set[str] = set()
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: Any = None
        self._writes: Coalesced[str, bool] = Coalesced(self._subscribe_many, bool, max_batch=_SUBSCRIBE_BATCH)
        self._connected = asyncio.Event()
        self._stopping = False
        self._returned = asyncio.Event()
        self.published = 0
        self.publish_failures = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------ subscribing
    async def subscribe(self, *channels: str) -> None:
        """Want these channels; returns once Redis confirmed every one, or after the
        deadline, or at once while Redis is unreachable (the reconnect will subscribe)
        or known to be down (the subscription is sent; Redis confirms it when it answers).
        One coroutine however many channels: a hello's three cost no task each."""
        self._channels.update(channels)
        if not self.connected:
            return
        fresh = [c for c in dict.fromkeys(channels) if c not in self._confirmed]
        if not fresh:
            return
        loop = asyncio.get_running_loop()
        waiters: list[tuple[str, asyncio.Future[None]]] = []
        first: list[str] = []  # channels nobody else is waiting for: this caller writes them
        for channel in fresh:
            waiter: asyncio.Future[None] = loop.create_future()
            queue = self._waiters.setdefault(channel, [])
            queue.append(waiter)
            waiters.append((channel, waiter))
            if len(queue) == 1:
                first.append(channel)
        writing = False
        try:
            async with Deadline(self._timeout):
                if first and self._pubsub is not None:
                    writing = True
                    # One SUBSCRIBE for every channel asked for while one is being written.
                    await self._writes.get_many(first)
                    writing = False
                for _, waiter in waiters:
                    if self.connected and self.health.up:
                        await asyncio.shield(waiter)
        except _REDIS_DOWN as exc:  # the deadline's TimeoutError too
            if writing:
                self._suspect = True  # the connection may be left half-written: a new one
            log.warning("bus.subscribe_failed" if writing else "bus.subscribe_slow",
                        extra={"channels": fresh[:10], "error": str(exc) or repr(exc)})
        finally:
            for channel, waiter in waiters:
                self._forget_waiter(channel, waiter)

    async def _subscribe_many(self, channels: list[str]) -> dict[str, bool]:
        pubsub = self._pubsub
        wanted = [c for c in channels if c in self._channels and c not in self._confirmed]
        if pubsub is not None and wanted:  # else the reconnect subscribes every channel still wanted
            await pubsub.subscribe(*wanted)
        return dict.fromkeys(channels, True)

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
            async with asyncio.timeout(self._timeout):
                await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError, AttributeError):
            pass  # the reconnect path only re-subscribes channels still listened to

    # ------------------------------------------------------------- publishing
    async def publish(self, channel: str, payload: bytes) -> bool:
        """Publish to the other nodes; False when it was not (Redis unreachable, too
        slow, or known to be down): the caller may keep it for later."""
        return await self.publish_many([(channel, payload)])

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> bool:
        """Publish several events, in order, in one call: all of them or none."""
        if not items:
            return True
        # Tried even while this node's own subscriber is reconnecting: another node
        # may already be back and caught up, and would never hear of these events.
        args: list[str | bytes | int] = [self.health.deadline_ms()]
        for channel, payload in items:
            args += [channel, payload]
        try:
            done = int(await self._publish(args=args))
        except _REDIS_DOWN as exc:
            self.publish_failures += len(items)
            log.warning("bus.publish_failed", extra={"events": len(items), "error": str(exc) or repr(exc)})
            return False
        if done < 0:
            self.health.late()
            self.publish_failures += len(items)
            log.warning("bus.publish_late", extra={"events": len(items)})
            return False
        self.published += len(items)
        return True

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
        deadline = time.monotonic() + _RESUBSCRIBE_WAIT
        while time.monotonic() < deadline and self.connected and not self._channels <= self._confirmed:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            pending = next(iter(self._channels - self._confirmed))
            self._waiters.setdefault(pending, []).append(waiter)
            try:
                # asyncio.timeout: wait_for may turn a cancel into a TimeoutError (3.11).
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    await waiter
            except TimeoutError:
                break
            finally:
                self._forget_waiter(pending, waiter)
        log.info("bus.resubscribed", extra={"channels": len(self._channels)})
        self._returned.set()

    async def _connect(self) -> None:
        pubsub = self._subscriber.pubsub()
        self._suspect = False
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.ping()  # opens the connection; raises if Redis is unreachable
                channels = list(self._channels)
                if channels:
                    await pubsub.subscribe(*channels)
        except BaseException:
            await self._close(pubsub)
            raise
        self._pubsub = pubsub
        self._connected.set()
        log.info("bus.connected", extra={"channels": len(channels)})

    async def _read(self) -> None:
        pubsub = self._pubsub
        last_seen = last_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if self._suspect:
                raise TimeoutError("a write to the subscriber connection failed")
            if now - last_seen > self._dead_after:
                self.health.down("no answer on the subscriber connection")
                raise TimeoutError(f"no answer from Redis on the subscriber connection for {now - last_seen:.1f} s")
            if now - last_ping >= _PING_EVERY:
                async with Deadline(self._timeout):
                    await pubsub.ping()
                last_ping = now
            message = await pubsub.get_message(timeout=_PING_EVERY)
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
            await self._close(pubsub)

    async def _close(self, pubsub: Any) -> None:
        try:
            async with asyncio.timeout(self._timeout):
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
