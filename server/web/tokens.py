"""Tokens: the HS256 JWTs the shop platform and the support team's login sign.

`authenticate` checks signature, expiry, role and the claims PROTOCOL.md requires,
and returns a `Principal`. `mint` is the counterpart used by `python -m server
token`, the demo page and tests. The edge (the WebSocket endpoint and the HTTP API)
authenticates; nothing below it sees a token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jwt

from server.errors import Unauthorized
from server.principal import LANGS, PLANS, Principal, Role
from server.rules.text import identifier_problem

_MAX_ID = 200


def _required(claims: dict[str, Any], name: str) -> str:
    value = _claim_str(claims, name, required=False)
    if value is None:
        raise Unauthorized(f"token lacks the {name!r} claim")
    return value


def _claim_str(claims: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise Unauthorized(f"token lacks the {name!r} claim")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise Unauthorized(f"token claim {name!r} must be a non-empty string")
    # Claims become database keys and Redis names: the same rule as ids in frames,
    # so a NUL in a `sub` is refused here instead of failing a write later.
    problem = identifier_problem(value, _MAX_ID)
    if problem is not None:
        raise Unauthorized(f"token claim {name!r} {problem}")
    return value


def authenticate(token: object, secret: str, now: datetime) -> Principal:
    if not isinstance(token, str) or not token:
        raise Unauthorized("hello needs a token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthorized("token claim 'exp' must be a number")
    # Expiry is checked against the injected clock, so POMOC_CLOCK and tests agree
    # with the tokens they mint.
    if exp <= now.timestamp():
        raise Unauthorized("token expired")
    role = claims.get("role")
    sub = _required(claims, "sub")
    lang = claims.get("lang", "pl")
    if lang not in LANGS:
        raise Unauthorized(f"token claim 'lang' must be one of {', '.join(LANGS)}")
    if role == Role.customer:
        shop = _required(claims, "shop")
        plan = _claim_str(claims, "plan", required=False) or "standard"
        if plan not in PLANS:
            raise Unauthorized(f"token claim 'plan' must be one of {', '.join(PLANS)}")
        name = _claim_str(claims, "name", required=False) or sub
        return Principal(
            role=Role.customer,
            id=sub,
            name=name,
            shop=shop,
            shop_name=_claim_str(claims, "shop_name", required=False) or shop,
            plan=plan,
            email=_claim_str(claims, "email", required=False),
            lang=lang,
            expires=float(exp),
        )
    if role == Role.agent:
        name = _required(claims, "name")
        departments = claims.get("departments") or []
        if not isinstance(departments, list) or not all(
            isinstance(d, str) and identifier_problem(d, _MAX_ID) is None for d in departments
        ):
            raise Unauthorized("token claim 'departments' must be a list of printable strings")
        return Principal(
            role=Role.agent,
            id=sub,
            name=name,
            email=_claim_str(claims, "email", required=False),
            departments=tuple(departments),
            lang=lang,
            lead=claims.get("lead") is True,
            expires=float(exp),
        )
    raise Unauthorized("token claim 'role' must be 'customer' or 'agent'")


def mint(
    secret: str,
    *,
    role: str,
    sub: str,
    now: datetime,
    ttl: timedelta = timedelta(hours=12),
    shop: str | None = None,
    shop_name: str | None = None,
    plan: str | None = None,
    name: str | None = None,
    email: str | None = None,
    departments: list[str] | None = None,
    lang: str | None = None,
    lead: bool | None = None,
) -> str:
    claims: dict[str, Any] = {"sub": sub, "role": role, "exp": int((now + ttl).timestamp())}
    for key, value in (("shop", shop), ("shop_name", shop_name), ("plan", plan), ("name", name),
                       ("email", email), ("departments", departments), ("lang", lang),
                       ("lead", lead)):
        if value is not None:
            claims[key] = value
    return jwt.encode(claims, secret, algorithm="HS256")
