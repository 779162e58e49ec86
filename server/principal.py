"""Who is on the other end of a connection or request: the `Principal`.

A principal comes from a verified token (`server.web.tokens`): a shop's user
(customer) or a member of the support team (agent). Kernel module: standard library
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PLANS = ("trial", "standard", "priority")
LANGS = ("pl", "en")


class Role(StrEnum):
    customer = "customer"
    agent = "agent"


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

    @property
    def is_agent(self) -> bool:
        return self.role is Role.agent

    @property
    def key(self) -> str:
        """A reader's identity across roles: `c:<shop>:<sub>` or `a:<sub>`.

        Customer ids are scoped by shop because each shop platform user id is only
        unique within its shop's namespace as far as Pomoc can tell. The key is an
        identity, not a storage name: Redis names are built from it by
        `server.realtime.keys`, which makes them unambiguous for any id.
        """
        return f"a:{self.id}" if self.is_agent else f"c:{self.shop}:{self.id}"

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role.value, "id": self.id, "name": self.name}
        if self.shop is not None:
            out["shop"] = self.shop
        if self.is_agent:
            out["departments"] = list(self.departments)
            if self.lead:
                out["lead"] = True
        return out
