"""Node-to-node events: what one node tells the connections of every node.

An `Event` is a frame on its way to the connections that want it, with what they
need to decide (`origin`: the connection that caused it; `held`: a message still
waiting for working hours; `queued`: of a ticket itself waiting in the off-hours
queue, which agents who look at it see live; `side`: who typed; `ref`: the request
it answers, for the connection that asked). It is encoded at most once per codec however many
connections receive it.

Events travel between nodes on Redis channels as JSON envelopes
`{"n": node_id, "e": {"k": kind, "f": frame, "o": origin, "x": {extras}}}` — JSON
because the Redis scripts that count unread messages publish envelopes themselves
(`cjson`, available in Redis and in the embedded stand-in alike). Which channel an
event came by is its `Source`; a connection's predicates use it (see
`server.protocol.delivery`). Sans-I/O: it must not import starlette, redis,
sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from server.protocol.codec import Codec


class Source(StrEnum):
    SHOP = "shop"  # a shop's tickets: messages, typing, changes
    INBOX = "inbox"  # every agent's live inbox
    READER = "reader"  # one reader's unread state
    PRESENCE = "presence"  # agents' presence


@dataclass(slots=True)
class Event:
    kind: str
    frame: dict[str, Any]
    origin: str | None = None
    held: bool = False
    queued: bool = False
    side: str | None = None
    ref: object = None
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encoded(self, codec: Codec) -> bytes:
        data = self._encoded.get(codec.name)
        if data is None:
            data = self._encoded[codec.name] = codec.encode(self.frame)
        return data


def envelope(node_id: str, event: Event) -> bytes:
    """The event as other nodes receive it (and as the Redis scripts build it)."""
    body: dict[str, Any] = {"k": event.kind, "f": event.frame}
    if event.origin is not None:
        body["o"] = event.origin
    extra: dict[str, Any] = {}
    if event.held:
        extra["held"] = True
    if event.queued:
        extra["queued"] = True
    if event.side is not None:
        extra["side"] = event.side
    if event.ref is not None:
        extra["ref"] = event.ref
    if extra:
        body["x"] = extra
    return orjson.dumps({"n": node_id, "e": body})


def own_prefix(node_id: str) -> bytes:
    """How every envelope this node publishes begins (the sender comes first)."""
    return envelope(node_id, Event("", {}))[: len(b'{"n":') + len(orjson.dumps(node_id)) + 1]


def open_envelope(payload: bytes) -> tuple[str, Event]:
    """(sending node, event) from an envelope; ValueError when it is not one."""
    try:
        envelope = orjson.loads(payload)
        node = envelope["n"]
        body = envelope["e"]
        kind, frame = body["k"], body["f"]
        extra = body.get("x") or {}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not an event envelope: {type(exc).__name__}") from None
    if not isinstance(node, str) or not isinstance(kind, str) or not isinstance(frame, dict) \
            or not isinstance(extra, dict):
        raise ValueError("not an event envelope: wrong field types")
    return node, Event(kind, frame, body.get("o"), held=bool(extra.get("held")), queued=bool(extra.get("queued")),
                       side=extra.get("side"), ref=extra.get("ref"))
