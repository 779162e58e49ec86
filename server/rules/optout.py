"""Unsubscribe links: what one says, signed so that only Pomoc can make one.

A link names one shop user and one ticket (or every ticket, `ticket` 0) and the
language of its confirmation page, and carries an HMAC-SHA256 of exactly that under
a key derived from `POMOC_SECRET` for this one purpose. It can do nothing but turn
that user's mail off for that scope: it is no session, holds no token, and a
forged or altered one fails verification. It does not expire (RFC 8058 asks that a
one-click link keep working; the worst it can do is what it says).

Pure module: standard library only; it must not import starlette, redis,
sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

_VERSION = 1
_PURPOSE = b"pomoc-mail-unsubscribe-v1"


@dataclass(frozen=True, slots=True)
class OptOut:
    shop: str
    user: str
    ticket: int  # 0: every ticket
    lang: str = "pl"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, optout: OptOut) -> str:
    """The token of an unsubscribe link (URL-safe: letters, digits, `-`, `_`, `.`)."""
    payload = _b64(json.dumps([_VERSION, optout.shop, optout.user, optout.ticket, optout.lang],
                              separators=(",", ":"), ensure_ascii=False).encode())
    mac = hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()[:18]
    return f"{payload}.{_b64(mac)}"


def verify(secret: str, token: str) -> OptOut | None:
    """What a token says, or None when it is not one Pomoc signed."""
    if not isinstance(token, str) or len(token) > 2000 or token.count(".") != 1:
        return None
    payload, _, mac = token.partition(".")
    try:
        expected = hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()[:18]
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        version, shop, user, ticket, lang = json.loads(_unb64(payload))
    except (ValueError, TypeError, UnicodeError):
        return None
    if (version != _VERSION or not isinstance(shop, str) or not isinstance(user, str)
            or not isinstance(ticket, int) or isinstance(ticket, bool) or ticket < 0 or lang not in ("pl", "en")):
        return None
    return OptOut(shop, user, ticket, lang)
