"""Who is on the other end of a connection or request: the `Principal`.

A principal comes from a verified token (`server.web.tokens`): a shop's user
(customer) or a member of the support team (agent). Kernel module: standard library
only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PLANS = ("trial", "standard", "priority")
LANGS = ("pl", "en")


class Role(StrEnum):
    customer = "customer"
    agent = "agent"


def reader_key(kind: str, *parts: str) -> str:
    """The identity of a reader (`Principal.key`): its kind and its ids, one string.

    Ids made of anything but `:` and `%` are joined as they are, `c:<shop>:<user>`
    and `a:<agent>`, the form every key had before. Any other ids are length-
    prefixed, `c:%<len>,<len>:<shop>:<user>`, so that shop `a:b` user `c` and shop
    `a` user `b:c` stay two readers (`c:%3,1:a:b:c` and `c:%1,3:a:b:c`). Either
    way no key is another key with `:<anything>` added, which is what keeps the
    Redis names built from a key and a suffix (`server.realtime.keys`) apart too.
    A key is at most 412 characters for ids of 200 (the columns hold 420).
    """
    if not any(":" in part or "%" in part for part in parts):
        return ":".join((kind, *parts))
    return f"{kind}:%{','.join(str(len(part)) for part in parts)}:{':'.join(parts)}"


def customer_key(shop: str, user: str) -> str:
    return reader_key("c", shop, user)


def agent_key(agent: str) -> str:
    return reader_key("a", agent)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    id: str
    name: str
    shop: str | None = None
    shop_name: str | None = None
    plan: str | None = None
    email: str | None = None
    departments: tuple[str, ...] = ()
    lang: str = "pl"
    lead: bool = False
    # When the token stops being valid (seconds since the epoch; 0: unknown).
    expires: float = 0.0
    # `key`, worked out once: the heartbeat asks every connection's for every beat.
    _key: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        key = agent_key(self.id) if self.role is Role.agent else customer_key(self.shop or "", self.id)
        object.__setattr__(self, "_key", key)

    @property
    def is_agent(self) -> bool:
        return self.role is Role.agent

    @property
    def key(self) -> str:
        """A reader's identity across roles: `c:<shop>:<sub>` or `a:<sub>` (see
        `reader_key`, which keeps it unambiguous for any id).

        Customer ids are scoped by shop because each shop platform user id is only
        unique within its shop's namespace as far as Pomoc can tell.
        """
        return self._key

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role.value, "id": self.id, "name": self.name}
        if self.shop is not None:
            out["shop"] = self.shop
        if self.is_agent:
            out["departments"] = list(self.departments)
            if self.lead:
                out["lead"] = True
        return out
