"""Unread state in Redis: per reader and ticket, exact under races, rebuildable.

For each reader (`Principal.key`) and ticket Redis holds the reader's cursor and the
*set* of unread sequence numbers (a sorted set), not a bare counter. A new message
adds its seq to the set of every other reader whose cursor is below it; a `read`
raises the cursor and trims the set. Both are set operations, so they commute: an
increment that arrives after the read that covered it, two nodes reporting messages
out of order, or a rebuild from the database running beside live traffic all end in
the same state. The count is the set's size; the badge is "any count above zero".

A batch whose call reaches Redis past its deadline is refused by the script (Redis
was hanging, the caller gave up and keeps the batch to publish it once Redis
answers): a hung Redis that wakes does not publish and count it on its own as well.

Redis is not the source of truth. A reader whose hash lacks the built marker (Redis
restarted or was flushed) is rebuilt from the database's messages and read cursors
before it is used; a ticket whose reader set is missing is rebuilt from the shop's
known users and the agents with a cursor on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from server.batching import Coalesced
from server.realtime.clients import run_script_many
from server.realtime.health import LATE, RedisHealth
from server.realtime.keys import Keys

BUILT = "_"

# One call per committed batch of messages: publish each to its channel (unless the
# channel is empty: the caller published it already) and count it for every other
# reader (`who`: all | customers | agents | none — a message held for working hours
# counts for agents only when released), publishing their new unread state too. ARGV:
# prefix, node id, deadline (ms, Redis's clock), then per message: channel, payload,
# ticket, seq, author, who. Returns {grown (reader, ticket, count)…, tickets whose
# reader set must be rebuilt}, or -1 when started past the deadline (nothing done:
# the caller keeps the batch for later, see `server.chat.announce`).
_AFTER_BATCH = LATE + """
if late(ARGV[3]) then return -1 end
local prefix, node = ARGV[1], ARGV[2]
local grown, rebuild = {}, {}
for i = 4, #ARGV, 6 do
  local channel, payload, ticket = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local seq, author, who = tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5]
  if channel ~= '' then redis.call('PUBLISH', channel, payload) end
  local readers = prefix .. 'readers:' .. ticket
  if redis.call('SISMEMBER', readers, '_') == 0 then
    table.insert(rebuild, ticket)
  else
    for _, reader in ipairs(redis.call('SMEMBERS', readers)) do
      local side = string.sub(reader, 1, 2)
      local wanted = who == 'all' or (who == 'customers' and side == 'c:') or (who == 'agents' and side == 'a:')
      if reader ~= '_' and reader ~= author and wanted then
        local book = prefix .. 'unread:' .. reader
        if redis.call('HEXISTS', book, '_') == 1 then
          local cursor = tonumber(redis.call('HGET', book, 'c:' .. ticket) or '0')
          if seq > cursor then
            local set = book .. ':' .. ticket
            redis.call('ZADD', set, seq, seq)
            local n = redis.call('ZCARD', set)
            redis.call('HSET', book, 'n:' .. ticket, n)
            local counts = {}
            counts[ticket] = n
            local frame = {type = 'unread', tickets = counts, badge = true}
            -- The event envelope of server.protocol.events, in JSON (cjson exists in
            -- Redis and in the embedded stand-in alike).
            redis.call('PUBLISH', prefix .. 'ch:reader:' .. reader,
                       cjson.encode({n = node, e = {k = 'unread', f = frame}}))
            table.insert(grown, reader)
            table.insert(grown, ticket)
            table.insert(grown, n)
          end
        end
      end
    end
  end
end
return {grown, rebuild}
"""

# Merge the database's view of one ticket into a reader's book: raise the cursor,
# trim, add the unread seqs it knows; returns the count.
_SYNC_TICKET = """
local function sync_ticket(book, ticket, cursor, seqs)
  local set = book .. ':' .. ticket
  local current = tonumber(redis.call('HGET', book, 'c:' .. ticket) or '0')
  if cursor > current then
    redis.call('HSET', book, 'c:' .. ticket, cursor)
    current = cursor
  end
  for _, seq in ipairs(seqs) do
    if seq > current then redis.call('ZADD', set, seq, seq) end
  end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', current)
  local n = redis.call('ZCARD', set)
  if n > 0 then redis.call('HSET', book, 'n:' .. ticket, n) else redis.call('HDEL', book, 'n:' .. ticket) end
  return n
end
"""

# KEYS: book. ARGV: ticket, cursor, then the unread seqs known to the database (may be empty).
_SYNC = _SYNC_TICKET + """
local seqs = {}
for i = 3, #ARGV do seqs[#seqs + 1] = tonumber(ARGV[i]) end
return sync_ticket(KEYS[1], ARGV[1], tonumber(ARGV[2]), seqs)
"""

# A whole reader's book in one call: the built marker, every ticket the database
# knows, optionally the reader joining those tickets' reader sets (only sets that
# exist: a missing one is rebuilt from the database, which knows this reader).
# KEYS: book. ARGV: prefix, reader, join (1/0), then per ticket: id, cursor, n, n seqs.
# Returns the book (HGETALL).
_SYNC_BOOK = _SYNC_TICKET + """
local book, prefix, reader, join = KEYS[1], ARGV[1], ARGV[2], ARGV[3] == '1'
redis.call('HSET', book, '_', '1')
local i = 4
while i <= #ARGV do
  local ticket, cursor, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local seqs = {}
  for j = 1, n do seqs[j] = tonumber(ARGV[i + 2 + j]) end
  sync_ticket(book, ticket, cursor, seqs)
  if join then
    local readers = prefix .. 'readers:' .. ticket
    if redis.call('SISMEMBER', readers, '_') == 1 then redis.call('SADD', readers, reader) end
  end
  i = i + 3 + n
end
return redis.call('HGETALL', book)
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: dict[int, int]

    @property
    def badge(self) -> bool:
        return badge(self.counts.values())


def badge(counts: Iterable[int]) -> bool:
    """The "!" beside POMOC: anything unread at all."""
    return any(n > 0 for n in counts)


def parse_book(raw: dict[bytes | str, bytes | str]) -> tuple[bool, dict[int, int]]:
    """(built, counts per ticket) from a reader's hash."""
    built = False
    counts: dict[int, int] = {}
    for key, value in raw.items():
        field = key.decode() if isinstance(key, bytes) else key
        if field == BUILT:
            built = True
        elif field.startswith("n:"):
            counts[int(field[2:])] = int(value)
    return built, counts


@dataclass(frozen=True, slots=True)
class _Sync:
    reader: str
    args: tuple[str | int, ...]  # the sync script's arguments (a reader and its state: its own key)


class UnreadBook:
    """The Redis adapter; the database side comes in as plain data from the caller."""

    def __init__(self, redis: Redis, keys: Keys, health: RedisHealth) -> None:
        self.redis = redis
        self.health = health
        self.keys = keys
        self._after_batch = redis.register_script(_AFTER_BATCH)
        self._sync = redis.register_script(_SYNC)
        self._sync_book = redis.register_script(_SYNC_BOOK)
        # The books of the hellos in flight, read in one pipeline (a reconnect storm).
        self._books: Coalesced[str, tuple[bool, dict[int, int]]] = Coalesced(
            self._read_books, lambda: (False, {}), max_batch=_PIPELINE)
        # The books built meanwhile (every new reader's first hello), in one pipeline too.
        self._syncs: Coalesced[_Sync, list[Any]] = Coalesced(self._sync_many, list, max_batch=_PIPELINE)

    async def publish_and_count(self, node_id: str, items: list[tuple[str, bytes, int, int, str, str]]
                                ) -> tuple[list[tuple[str, int, int]], list[int]]:
        """Publish a batch of messages and count them for their readers in one call.
        Items: (channel, payload, ticket, seq, author, who). Returns who grew to what
        (reader, ticket, count) and the tickets whose reader set must be rebuilt."""
        args: list[bytes | str | int] = [self.keys.prefix, node_id, self.health.deadline_ms()]
        for item in items:
            args.extend(item)
        raw = await self._after_batch(args=args)
        if not isinstance(raw, list):
            raise self.health.late()
        grown_raw, rebuild_raw = raw
        grown = [(_text(grown_raw[i]), int(grown_raw[i + 1]), int(grown_raw[i + 2]))
                 for i in range(0, len(grown_raw), 3)]
        return grown, [int(t) for t in rebuild_raw]

    async def set_readers(self, readers_by_ticket: dict[int, list[str]]) -> None:
        """Rebuilt reader sets (from the database), in one round trip."""
        if not readers_by_ticket:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for ticket_id, readers in readers_by_ticket.items():
                pipe.sadd(self.keys.readers(ticket_id), BUILT, *readers)
            await pipe.execute()

    async def sync(self, reader: str, state: dict[int, tuple[int, list[int]]], *, join: bool = False) -> Snapshot:
        """Merge the database's view {ticket: (cursor, unread seqs)} into Redis, mark
        the reader built (and with `join`, add it to those tickets' reader sets), in
        one call (the books built meanwhile share its pipeline: every new customer's
        first hello builds one); returns the reader's counts afterwards."""
        args: list[str | int] = [self.keys.prefix, reader, 1 if join else 0]
        for ticket_id, (cursor, seqs) in state.items():
            args.extend((ticket_id, cursor, len(seqs), *seqs))
        # A message counted meanwhile reaches the sorted sets directly, one committed
        # earlier is in `state`; set union keeps both.
        raw = await self._syncs.get(_Sync(reader, tuple(args)))
        _, counts = parse_book(dict(zip(raw[0::2], raw[1::2], strict=True)))
        return Snapshot(counts)

    async def _sync_many(self, syncs: list[_Sync]) -> dict[_Sync, list[Any]]:
        answers = await run_script_many(self.redis, self._sync_book,
                                        [([self.keys.unread(one.reader)], list(one.args)) for one in syncs])
        return dict(zip(syncs, answers, strict=True))

    async def read(self, reader: str, ticket_id: int, cursor: int) -> int:
        return int(await self._sync(keys=[self.keys.unread(reader)], args=[ticket_id, cursor]))

    async def read_book(self, reader: str) -> tuple[bool, dict[int, int]]:
        """(built, counts) in one round trip, shared with the other readers asking meanwhile."""
        return await self._books.get(reader)

    async def _read_books(self, readers: list[str]) -> dict[str, tuple[bool, dict[int, int]]]:
        if len(readers) == 1:
            return {readers[0]: parse_book(await self.redis.hgetall(self.keys.unread(readers[0])))}
        async with self.redis.pipeline(transaction=False) as pipe:
            for reader in readers:
                pipe.hgetall(self.keys.unread(reader))
            books = await pipe.execute()
        return {reader: parse_book(book) for reader, book in zip(readers, books, strict=True)}

    async def built(self, reader: str) -> bool:
        return bool(await self.redis.hexists(self.keys.unread(reader), BUILT))

    async def snapshot(self, reader: str) -> Snapshot:
        _, counts = parse_book(await self.redis.hgetall(self.keys.unread(reader)))
        return Snapshot(counts)

    async def forget_tickets(self, readers_by_ticket: dict[int, set[str]]) -> dict[str, list[int]]:
        """Remove every trace of purged tickets (no badge may point at them), in
        bounded pipelines. `readers_by_ticket`: who may hold state about each ticket
        (the database's view); the ticket's reader set in Redis adds the rest.
        Returns, per reader, the purged tickets it still counted as unread."""
        pointed: dict[str, list[int]] = {}
        for ticket_id, readers in readers_by_ticket.items():
            members = await self.redis.smembers(self.keys.readers(ticket_id))
            everyone = (set(readers) | {_text(m) for m in members}) - {BUILT}
            ordered = sorted(everyone)
            for start in range(0, len(ordered), _PIPELINE):
                chunk = ordered[start:start + _PIPELINE]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for reader in chunk:
                        book = self.keys.unread(reader)
                        pipe.hget(book, f"n:{ticket_id}")
                        pipe.hdel(book, f"c:{ticket_id}", f"n:{ticket_id}")
                        pipe.delete(self.keys.unread_seqs(reader, ticket_id))
                    results = await pipe.execute()
                for i, reader in enumerate(chunk):
                    count = results[3 * i]
                    if count is not None and int(count) > 0:
                        pointed.setdefault(reader, []).append(ticket_id)
            await self.redis.delete(self.keys.readers(ticket_id))
        return pointed


_PIPELINE = 500  # readers per pipeline: memory stays bounded whatever the backlog


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

