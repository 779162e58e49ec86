"""The support rules a deployment's settings describe, built once at startup.

`Rules.from_settings(settings)` parses the rule configuration the settings keep as
text (opening hours, reaction targets, fair-use limits, departments, lifecycle
durations) into the pure policy objects the rest of Pomoc is handed, and fails with
`SettingsError` naming the variable when a value is wrong. Pure module: it must not
import starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.rules.intake import DEFAULT_DEPARTMENTS, Department, parse_departments
from server.rules.limits import Limits, parse_limit
from server.rules.policy import SupportPolicy
from server.rules.retention import LifecyclePolicy
from server.settings import Settings, SettingsError

_LIMIT_FIELDS = {"POMOC_RATE_USER_MESSAGES": "user_messages", "POMOC_RATE_SHOP_MESSAGES": "shop_messages",
                 "POMOC_RATE_SHOP_TICKETS": "shop_tickets", "POMOC_RATE_SHOP_UPLOADS": "shop_uploads",
                 "POMOC_RATE_AGENT_MESSAGES": "agent_messages", "POMOC_RATE_SHOP_DEFLECTIONS": "shop_deflections"}


@dataclass(frozen=True)
class Rules:
    policy: SupportPolicy
    lifecycle: LifecyclePolicy
    limits: Limits
    departments: tuple[Department, ...]
    default_department: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        try:
            policy = SupportPolicy.from_config(settings.hours, settings.closed_dates, settings.open_dates,
                                               settings.sla_targets, settings.sla_warnings, tz=settings.timezone,
                                               plans=settings.plans, same_day_cutoff=settings.same_day_cutoff)
            lifecycle = LifecyclePolicy.from_config(settings.silent_reminders, settings.silent_resolve,
                                                    settings.resolved_close, settings.retention)
            parsed = {_LIMIT_FIELDS[var]: parse_limit(text, var) for var, text in settings.rate_limits}
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        limits = Limits(**parsed, user_connections=settings.max_user_connections)
        try:
            departments = parse_departments(settings.departments or DEFAULT_DEPARTMENTS)
        except ValueError as exc:
            raise SettingsError(f"POMOC_DEPARTMENTS: {exc}") from None
        keys = [d.key for d in departments]
        if settings.default_department not in keys:
            raise SettingsError(f"POMOC_DEFAULT_DEPARTMENT {settings.default_department!r} is not one of "
                                f"{', '.join(keys)}")
        return cls(policy, lifecycle, limits, departments, settings.default_department)
