"""What Pomoc's own Redis connections share (the bus's subscriber,
`server.realtime.subscriber`, and the scripts' connection, `server.realtime.commands`):
which URLs they serve, where a URL points, the commands that open a connection, and
TCP keepalive on its socket."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from redis.connection import parse_url


def usable(url: str) -> bool:
    """Whether Pomoc's own connections serve the URL (plain TCP, no TLS or unix socket)."""
    return url.startswith("redis://")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    username: str | None
    password: str | None
    db: int

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        options = parse_url(url)  # type: ignore[no-untyped-call]
        return cls(options.get("host") or "127.0.0.1", int(options.get("port") or 6379), options.get("username"),
                   options.get("password"), int(options.get("db") or 0))

    def opening(self, select: bool) -> list[tuple[Any, ...]]:
        """The commands a new connection sends first: AUTH when the URL names a
        password, SELECT when asked (commands; a subscriber has no database), then
        PING, whose answer says the connection is open."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            commands.append(("AUTH", *((self.username,) if self.username else ()), self.password))
        if select and self.db:
            commands.append(("SELECT", self.db))
        commands.append(("PING",))
        return commands


def keep_alive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
