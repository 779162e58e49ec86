"""Wire codecs: `pomoc.v1.json` (text frames) and `pomoc.v1.msgpack` (binary frames).

A codec turns one frame (a dict) into what goes on the socket and back. Decoding
failures raise `BadRequest`, so a garbage frame costs the client an `error` frame,
never the connection. Sans-I/O: it must not import starlette, redis, sqlalchemy,
asyncio or jwt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from server.errors import BadRequest

JSON_SUBPROTOCOL = "pomoc.v1.json"
MSGPACK_SUBPROTOCOL = "pomoc.v1.msgpack"


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    binary: bool

    def encode(self, frame: dict[str, Any]) -> bytes:
        if self.binary:
            data: bytes = msgpack.packb(frame, use_bin_type=True)
            return data
        return orjson.dumps(frame)

    def decode(self, data: bytes | str) -> dict[str, Any]:
        try:
            if self.binary:
                if isinstance(data, str):
                    raise BadRequest("this connection speaks msgpack: send binary frames")
                value = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
            else:
                value = orjson.loads(data)
        except BadRequest:
            raise
        except Exception as exc:  # hostile input: any decoder failure is the client's mistake
            kind = "msgpack" if self.binary else "JSON"
            raise BadRequest(f"frame is not valid {kind}: {type(exc).__name__}") from None
        if not isinstance(value, dict):
            raise BadRequest("a frame must be an object with a 'type'")
        return value


JSON = Codec(JSON_SUBPROTOCOL, binary=False)
MSGPACK = Codec(MSGPACK_SUBPROTOCOL, binary=True)
CODECS = {JSON.name: JSON, MSGPACK.name: MSGPACK}


def negotiate(offered: list[str]) -> tuple[Codec, str | None]:
    """The codec for the client's offered subprotocols, and the one to echo back.

    A client that offers nothing we know gets JSON, and no subprotocol is echoed."""
    for name in offered:
        codec = CODECS.get(name.strip())
        if codec is not None:
            return codec, codec.name
    return JSON, None
