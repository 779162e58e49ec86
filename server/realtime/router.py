"""This node's routing of events to its connections, by channel.

A connection listens on a handful of channels (its shop's, its own reader channel,
the inbox, presence). The router keeps, per channel, the local listeners — the
listener itself while it is the only one (most channels: a shop's or a reader's),
a set from the second on — and which kind of channel it is. An event is routed
from this node at once (`route`), or arrives from another node as an envelope
(`route_payload`, given to the bus): opened once, dropped when it is this node's
own, and handed to every listener, which decides for itself (see
`server.protocol.delivery`). The router knows channels, not protocols: the
envelope's opener and the listeners come in from the wiring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class Listener(Protocol):
    def deliver(self, source: Any, event: Any) -> None: ...


L = TypeVar("L", bound=Listener)
Opener = Callable[[bytes], tuple[str, Any]]


class Router(Generic[L]):
    def __init__(self, node_id: str, open_envelope: Opener, own_prefix: bytes | None = None) -> None:
        self.node_id = node_id
        self._open = open_envelope
        # How this node's own envelopes begin: recognised without opening them.
        self._own_prefix = own_prefix
        self._members: dict[str, L | set[L]] = {}
        self._sources: dict[str, Any] = {}

    def listen(self, listener: L, channel: str, source: Any) -> bool:
        """Add a listener; True when the channel is new on this node (subscribe it)."""
        members = self._members.get(channel)
        if members is None:
            self._members[channel] = listener
            self._sources[channel] = source
            return True
        if isinstance(members, set):
            members.add(listener)
        elif members is not listener:
            self._members[channel] = {members, listener}
        return False

    def forget(self, listener: L, channels: Iterable[str]) -> list[str]:
        """Remove a listener; returns the channels nobody here listens to any more."""
        gone: list[str] = []
        for channel in channels:
            members = self._members.get(channel)
            if isinstance(members, set):
                members.discard(listener)
                if len(members) > 1:
                    continue
                if members:
                    self._members[channel] = next(iter(members))
                    continue
            elif members is not listener:
                continue
            del self._members[channel]
            self._sources.pop(channel, None)
            gone.append(channel)
        return gone

    def route(self, channel: str, event: Any) -> None:
        members = self._members.get(channel)
        if members is None:
            return
        source = self._sources[channel]
        if isinstance(members, set):
            for listener in tuple(members):
                self._hand(listener, source, event)
        else:
            self._hand(members, source, event)

    def route_payload(self, channel: str, payload: bytes) -> None:
        """An envelope from Redis (events of this node come back too: dropped)."""
        if channel not in self._members:
            return
        if self._own_prefix is not None and payload.startswith(self._own_prefix):
            return  # this node's own event, back from Redis
        try:
            node, event = self._open(payload)
        except ValueError:
            log.warning("router.bad_payload", extra={"channel": channel})
            return
        if node != self.node_id:
            self.route(channel, event)

    @staticmethod
    def _hand(listener: L, source: Any, event: Any) -> None:
        try:
            listener.deliver(source, event)
        except Exception:  # one broken connection must not cost the others the event
            log.exception("router.listener_failed")
