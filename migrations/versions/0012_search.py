"""Search: an index of the words of message bodies and ticket titles, folded.

PostgreSQL: `search_documents` holds each message's words (`tsvector`, GIN index
`ix_search_documents`), written off the message hot path by the search indexer
(`server.store.search.SearchIndexer`, a background task of every node) up to the
message id in `search_cursor`; this migration fills both for the messages that
exist. A message the indexer has not reached yet is still found: a search also
reads the few messages past the cursor directly. Ticket titles, written once per
ticket, have an expression GIN index (`ix_tickets_search`). Both fold with
`pomoc_search_text(text)`, an IMMUTABLE SQL function doing what
`server.rules.searchtext` does (ASCII capitals and Polish letters to small base
letters, every run of other characters to one space — no extension needed:
`unaccent` is not everywhere, is not immutable, and folds more than the rule).

SQLite: FTS5 tables `messages_search` and `tickets_search` (rowid = the message or
ticket id) holding the folded text, written by triggers in the transaction that
writes the row, and filled here with what exists. (A later migration that rebuilds
`messages` or `tickets` with a batch "move and copy" must recreate these triggers.)

The letters below are `server.rules.searchtext.POLISH`/`POLISH_BASE` as of this
revision; a unit test fails when the rule and this migration disagree.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

POLISH = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"
POLISH_BASE = "acelnoszzacelnoszz"

# lower() for ASCII (the same in every collation; what it does to other letters does
# not matter: the Polish ones are in the translate() both ways, the rest become spaces).
FUNCTION = f"""
CREATE OR REPLACE FUNCTION pomoc_search_text(body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT regexp_replace(translate(lower(body), '{POLISH}', '{POLISH_BASE}'), '[^a-z0-9]+', ' ', 'g') $$
"""
# Only ł and Ł: FTS5's unicode61 tokenizer folds case and the other diacritics itself.
_SQLITE_FOLD = "replace(replace({}, 'ł', 'l'), 'Ł', 'L')"

SQLITE = [
    "CREATE VIRTUAL TABLE messages_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE tickets_search USING fts5(title, tokenize = 'unicode61 remove_diacritics 2')",
    f"""CREATE TRIGGER messages_search_insert AFTER INSERT ON messages WHEN new.author_kind <> 'system' BEGIN
        INSERT INTO messages_search(rowid, body) VALUES (new.id, {_SQLITE_FOLD.format('new.body')}); END""",
    """CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
        DELETE FROM messages_search WHERE rowid = old.id; END""",
    f"""CREATE TRIGGER messages_search_update AFTER UPDATE OF body, author_kind ON messages BEGIN
        DELETE FROM messages_search WHERE rowid = old.id;
        INSERT INTO messages_search(rowid, body) SELECT new.id, {_SQLITE_FOLD.format('new.body')}
        WHERE new.author_kind <> 'system'; END""",
    f"""CREATE TRIGGER tickets_search_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO tickets_search(rowid, title) VALUES (new.id, {_SQLITE_FOLD.format('new.title')}); END""",
    """CREATE TRIGGER tickets_search_delete AFTER DELETE ON tickets BEGIN
        DELETE FROM tickets_search WHERE rowid = old.id; END""",
    f"""CREATE TRIGGER tickets_search_update AFTER UPDATE OF title ON tickets BEGIN
        DELETE FROM tickets_search WHERE rowid = old.id;
        INSERT INTO tickets_search(rowid, title) VALUES (new.id, {_SQLITE_FOLD.format('new.title')}); END""",
    f"""INSERT INTO messages_search(rowid, body) SELECT id, {_SQLITE_FOLD.format('body')} FROM messages
        WHERE author_kind <> 'system'""",
    f"INSERT INTO tickets_search(rowid, title) SELECT id, {_SQLITE_FOLD.format('title')} FROM tickets",
]


POSTGRESQL = [
    FUNCTION,
    """CREATE TABLE search_documents (
        message_id BIGINT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        words TSVECTOR NOT NULL)""",
    "CREATE TABLE search_cursor (id SMALLINT PRIMARY KEY, message_id BIGINT NOT NULL)",
    # What exists now; the indexer goes on from the cursor. (Run before the servers
    # start, as migrations are: no message commits meanwhile below the cursor.)
    """INSERT INTO search_documents (message_id, words)
        SELECT id, to_tsvector('simple'::regconfig, pomoc_search_text(body)) FROM messages
        WHERE author_kind <> 'system'""",
    "INSERT INTO search_cursor (id, message_id) SELECT 1, coalesce(max(id), 0) FROM messages",
    "CREATE INDEX ix_search_documents ON search_documents USING gin (words)",
]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for statement in POSTGRESQL:
            op.execute(statement)
        with op.get_context().autocommit_block():
            op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tickets_search ON tickets "
                       "USING gin (to_tsvector('simple'::regconfig, pomoc_search_text(title)))")
        return
    for statement in SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_tickets_search")
        op.execute("DROP TABLE IF EXISTS search_cursor")
        op.execute("DROP TABLE IF EXISTS search_documents")
        op.execute("DROP FUNCTION IF EXISTS pomoc_search_text(text)")
        return
    for name in ("messages_search_insert", "messages_search_delete", "messages_search_update",
                 "tickets_search_insert", "tickets_search_delete", "tickets_search_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS messages_search")
    op.execute("DROP TABLE IF EXISTS tickets_search")
