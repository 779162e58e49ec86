"""What a node believes its tickets' rows hold: the columns a send's admission, its
reaction clock and the report facts read (`server.store.commit_sql.TICKET_COLUMNS`).

The group commit decides a batch from these beliefs and its one statement stores only
into tickets whose rows still hold exactly them, so a wrong belief costs a round trip,
never a wrong decision: whatever else changes a ticket (another node's sends, a status
change, a close) is seen there, and the belief is replaced by the row it found.
After a store the writer believes what its own update wrote (`after_store`, the same
rule as the statement's). The newest `size` tickets are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from server.rules.deadlines import Running

Row = Mapping[str, Any]
# The columns that may change while a ticket is open, in the statement's order
# (`shop_id` and `created_at` never change).
CHECKED = ("status", "severity", "queued_until", "live_until", "last_seq", "plan", "sla_due_at",
           "first_response_at", "sla_started_at")


class TicketBeliefs:
    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[int, Row] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, ticket_id: int) -> Row | None:
        return self._rows.get(ticket_id)

    def learn(self, ticket_id: int, row: Row) -> None:
        self._rows[ticket_id] = row
        self._rows.move_to_end(ticket_id)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def forget(self, ticket_id: int) -> None:
        self._rows.pop(ticket_id, None)


def checked(rows: Mapping[int, Row]) -> tuple[list[Any], ...]:
    """The ids and, column by column, what their rows are believed to hold (the
    statement's `held` check)."""
    values = list(rows.values())
    return (list(rows), *([row[column] for row in values] for column in CHECKED))


def after_store(row: Row, last_seq: int, at: datetime, agent: bool, clock: Running | None) -> dict[str, Any]:
    """The ticket's row after the group commit's update (`commit_sql._BUMP`): the new
    last seq, the first response if an agent answered first, the clock if it moved."""
    new = dict(row)
    new["last_seq"] = last_seq
    if agent and new["first_response_at"] is None:
        new["first_response_at"] = at
    if clock is not None:
        new["sla_due_at"] = clock.due_at
        new["sla_started_at"] = clock.started_at
    return new


def from_record(record: Row, ticket_id: int) -> dict[str, Any]:
    """A belief from a row a statement returned (its own columns only)."""
    return {"id": ticket_id, "shop_id": record["shop_id"], **{column: record[column] for column in CHECKED},
            "created_at": record["created_at"]}
