"""Priority follows conduct (seed 001: "in case of abuse other tickets take priority").

A shop's record is its recent critical and major claims and how many of them an
agent downgraded. When most were overstated, a new critical or major claim is
treated one level lower until an agent confirms it, the customer is told so
honestly, and the shop's queued tickets go behind others of the same severity.
Pure module: the record comes in as numbers, the decision goes out as data; it
must not import starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from server.rules.severity import Severity, label, lower, rank

CLAIMS = (Severity.CRITICAL.value, Severity.MAJOR.value)
WINDOW = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Record:
    claims: int  # critical/major claims in the window
    downgraded: int  # of those, lowered by an agent

    @property
    def overstates(self) -> bool:
        """Mostly overstated, on enough claims to be a pattern rather than bad luck."""
        return self.claims >= 3 and self.downgraded * 2 > self.claims

    def public(self) -> dict[str, object]:
        return {"claims": self.claims, "downgraded": self.downgraded, "penalized": self.overstates}


@dataclass(frozen=True, slots=True)
class Decision:
    severity: str  # what the ticket is treated as
    claimed: str  # what the customer said
    deprioritized: bool
    note: str | None  # told to the customer, when the claim is lowered


def decide(claimed: str, record: Record, lang: str = "pl") -> Decision:
    if claimed not in CLAIMS or not record.overstates:
        return Decision(claimed, claimed, record.overstates, None)
    treated = lower(Severity(claimed)).value
    if lang == "en":
        note = (f"Most of your shop's recent tickets marked urgent turned out less urgent, so for now we treat "
                f"this one as “{label(Severity(treated), 'en')}”. An agent raises the priority on confirming "
                f"that it is “{label(Severity(claimed), 'en')}”.")
    else:
        note = (f"Większość ostatnich zgłoszeń Twojego sklepu oznaczonych jako pilne okazała się mniej pilna, "
                f"dlatego to zgłoszenie traktujemy na razie jako „{label(Severity(treated))}”. "
                f"Konsultant podniesie priorytet, gdy potwierdzi, że sprawa jest „{label(Severity(claimed))}”.")
    return Decision(treated, claimed, True, note)


def is_downgrade(claimed: str | None, severity: str) -> bool:
    return claimed in CLAIMS and rank(Severity(severity)) < rank(Severity(claimed))
