"""The group commit's statements (PostgreSQL, raw asyncpg; `server.store.writer`).

Two ways to store a batch. The locked way is a transaction: lock the tickets
(`LOCK`), decide, store (`STORE`), commit — four round trips. The believed way is
one statement in autocommit (`TRY`): the writer decides from what it believes the
tickets' rows hold (`server.store.beliefs`), and the statement locks the tickets,
stores only into those whose rows still hold exactly that, and returns the current
rows of the others, whose sends are decided again. One round trip while the beliefs
are right, two when another node or path changed a ticket meanwhile.
"""

from __future__ import annotations

# What a send's admission, clock and report facts read of its ticket.
TICKET_COLUMNS = ("id, shop_id, status, severity, queued_until, live_until, last_seq, plan, sla_due_at, "
                  "first_response_at, sla_started_at, created_at")

LOCK = f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

# The beliefs of tickets this node has not seen yet (no lock: `TRY` checks them).
READ = f"SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ANY($1::bigint[])"

EXISTING = """
SELECT m.ticket_id, m.seq, m.id, m.author_kind, m.author_id, m.author_name, m.body, m.created_at, m.client_id,
       m.queued_until, m.internal
FROM messages m
JOIN unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS k(t, ak, ai, ci)
  ON m.ticket_id = k.t AND m.author_kind = k.ak AND m.author_id = k.ai AND m.client_id = k.ci
"""

# Other agents' messages after what each checked send's console showed (only sends
# whose ticket moved past it are looked up: see `may_be_stale`).
NEWER = """
SELECT k.i, m.seq
FROM unnest($1::int[], $2::bigint[], $3::int[], $4::text[]) AS k(i, t, after, me)
JOIN messages m ON m.ticket_id = k.t AND m.seq > k.after AND m.author_kind = 'agent' AND m.author_id <> k.me
  AND NOT m.internal
ORDER BY k.i, m.seq
"""

# The batch's messages ($1–$9, $14) and the tickets' new last_seq, reaction clock and
# report facts ($10–$13, $15–$25), both limited by {where} (a ticket id must match it).
_INSERT = """
  INSERT INTO messages (ticket_id, seq, author_kind, author_id, author_name, body, client_id, created_at,
                        queued_until, internal)
  SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::timestamptz[], $9::timestamptz[], $14::bool[])
       AS m(ticket_id, seq, author_kind, author_id, author_name, body, client_id, created_at, queued_until, internal)
  {where}
"""
_BUMP = """
  UPDATE tickets t SET last_seq = v.last_seq, last_message_at = v.at, updated_at = v.at,
         last_public_seq = COALESCE(v.public_seq, t.last_public_seq),
         first_response_at = CASE WHEN v.agent AND t.first_response_at IS NULL THEN v.at ELSE t.first_response_at END,
         first_responder = CASE WHEN t.first_response_at IS NULL THEN v.responder ELSE t.first_responder END,
         first_response_s = CASE WHEN t.first_response_at IS NULL THEN v.first_s ELSE t.first_response_s END,
         next_responses = t.next_responses + v.steps,
         next_response_s = t.next_response_s + v.steps_s,
         next_response_breaches = t.next_response_breaches + v.late,
         sla_due_at = CASE WHEN v.clock THEN v.due ELSE t.sla_due_at END,
         sla_warning_at = CASE WHEN v.clock THEN v.warn ELSE t.sla_warning_at END,
         sla_started_at = CASE WHEN v.clock THEN v.started ELSE t.sla_started_at END,
         inbox_rank = CASE WHEN v.clock THEN v.rank ELSE t.inbox_rank END
  FROM unnest($10::bigint[], $11::int[], $12::timestamptz[], $13::bool[], $15::int[], $16::bool[],
              $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::smallint[], $21::text[],
              $22::int[], $23::int[], $24::bigint[], $25::int[])
       AS v(id, last_seq, at, agent, public_seq, clock, due, warn, started, rank, responder, first_s, steps,
            steps_s, late)
  WHERE t.id = v.id {where}
"""

# Inside the locked transaction: a repeat skipped by ON CONFLICT rolls both back.
STORE = f"""
WITH stored AS (
{_INSERT.format(where="")}
  ON CONFLICT (ticket_id, author_kind, author_id, client_id) DO NOTHING
  RETURNING id, ticket_id, seq
), bumped AS (
{_BUMP.format(where="")}
)
SELECT id, ticket_id, seq FROM stored
"""

# The believed way, one statement. `locked` locks every ticket of the batch ($26) in
# id order, as `LOCK` does, and sees each row's newest version; `held` names those
# whose rows still hold what the writer believed ($27–$36), and is complete before
# anything is written (an aggregate, read as an InitPlan). A repeated send breaks the
# unique key and aborts the whole statement: nothing is stored, the batch is redone
# the locked way. Rows: kind 0 a ticket that did not hold (its current row), kind 1 a
# stored message, kind 2 a ticket that held.
TRY = f"""
WITH locked AS MATERIALIZED (
  SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ANY($26::bigint[]) ORDER BY id FOR UPDATE
), held AS MATERIALIZED (
  SELECT coalesce(array_agg(l.id), '{{}}'::bigint[]) AS ids
  FROM locked l
  JOIN unnest($27::bigint[], $28::text[], $29::text[], $30::timestamptz[], $31::timestamptz[], $32::int[],
              $33::text[], $34::timestamptz[], $35::timestamptz[], $36::timestamptz[])
       AS e(id, status, severity, queued_until, live_until, last_seq, plan, sla_due_at, first_response_at,
            sla_started_at)
    ON e.id = l.id
  WHERE (l.status, l.severity, l.queued_until, l.live_until, l.last_seq, l.plan, l.sla_due_at, l.first_response_at,
         l.sla_started_at)
        IS NOT DISTINCT FROM
        (e.status, e.severity, e.queued_until, e.live_until, e.last_seq, e.plan, e.sla_due_at, e.first_response_at,
         e.sla_started_at)
), stored AS (
{_INSERT.format(where="WHERE m.ticket_id = ANY((SELECT ids FROM held)::bigint[])")}
  RETURNING id, ticket_id, seq
), bumped AS (
{_BUMP.format(where="AND t.id = ANY((SELECT ids FROM held)::bigint[])")}
)
SELECT 0 AS kind, l.id AS ticket_id, NULL::int AS seq, NULL::bigint AS message_id, l.shop_id, l.status,
       l.severity, l.queued_until, l.live_until, l.last_seq, l.plan, l.sla_due_at, l.first_response_at,
       l.sla_started_at, l.created_at
FROM locked l WHERE NOT l.id = ANY((SELECT ids FROM held)::bigint[])
UNION ALL
SELECT 1, s.ticket_id, s.seq, s.id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM stored s
UNION ALL
SELECT 2, h, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM held, unnest(held.ids) AS h
"""
