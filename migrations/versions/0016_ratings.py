"""Ratings and the lead's reports: the customer's answer to "was the problem solved?"
and the ticket facts the reports read, stored when they happen.

`ratings`: one row per answer a customer gives to a resolved ticket — `solved` true
with a `score` 1–5 (and an optional comment) closes it; `solved` false reopens it
(no score). Indexed by when it was given (the reports' period) and by ticket.

`tickets` gains what a report needs without walking messages: `first_responder` (the
agent whose answer was the first response), `first_response_s` and `resolution_s`
(working seconds on the ticket's own calendar from its opening to that answer, and
to its first resolution), `next_responses`, `next_response_s`,
`next_response_breaches` (each next-response step answered: how many, their working
seconds summed, how many after their deadline), and `held_s` (seconds the off-hours
queue held it at opening). Existing tickets keep these NULL or 0: they are reported
as counted but not timed. `ix_tickets_created` serves the period.

Revision ID: 0016
Revises: 0012 (chained after 0015_agents at merge)
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

from server.store.models import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch "move and copy"): SQLite's search triggers on
    # `tickets` (0012) stay as they are.
    op.add_column("tickets", sa.Column("first_responder", sa.String(200)))
    op.add_column("tickets", sa.Column("first_response_s", sa.Integer()))
    op.add_column("tickets", sa.Column("resolution_s", sa.Integer()))
    op.add_column("tickets", sa.Column("next_responses", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("tickets", sa.Column("next_response_s", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("tickets", sa.Column("next_response_breaches", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("tickets", sa.Column("held_s", sa.Integer()))
    op.create_index("ix_tickets_created", "tickets", ["created_at"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("shop_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("solved", sa.Boolean(), nullable=False),
        sa.Column("score", sa.SmallInteger()),
        sa.Column("comment", sa.Text()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_ratings_created", "ratings", ["created_at"])
    op.create_index("ix_ratings_ticket", "ratings", ["ticket_id"])
    op.create_index("ix_help_deflections_created", "help_deflections", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_help_deflections_created", "help_deflections")
    op.drop_table("ratings")
    op.drop_index("ix_tickets_created", "tickets")
    for column in ("held_s", "next_response_breaches", "next_response_s", "next_responses", "resolution_s",
                   "first_response_s", "first_responder"):
        op.drop_column("tickets", column)
