"""Every Redis key and pub/sub channel name Pomoc uses, in one place.

All names start with the deployment's prefix (`POMOC_REDIS_PREFIX`), so deployments
and test runs can share one Redis, and a purge can find every key about a ticket.
Pure module.

Every name is unambiguous for any id: it is a fixed word (`unread:`, `ch:shop:` …)
followed by exactly one id, at the end, so two different ids give two names. The
one kind with something after its id is a reader's unread set of a ticket,
`unread:<reader>:<ticket>` beside the reader's book `unread:<reader>`; it cannot
meet another reader's book because no reader key is another one with `:<suffix>`
added (`server.principal.reader_key`). The Lua scripts build the same names from
the same parts (`unread.py`, `presence.py`); `tests/unit/test_keys.py` checks both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "pomoc:"

    # ---------------------------------------------------------------- channels
    def shop_channel(self, shop_id: str) -> str:
        """Messages, typing and ticket changes of one shop's tickets."""
        return f"{self.prefix}ch:shop:{shop_id}"

    @property
    def inbox_channel(self) -> str:
        """Ticket changes for every agent's live inbox."""
        return f"{self.prefix}ch:inbox"

    def reader_channel(self, reader: str) -> str:
        """Unread updates for one reader's connections (all tabs, all nodes)."""
        return f"{self.prefix}ch:reader:{reader}"

    @property
    def presence_channel(self) -> str:
        return f"{self.prefix}ch:presence"

    # -------------------------------------------------------------------- keys
    def unread(self, reader: str) -> str:
        """A reader's book (hash): the built marker, per ticket its cursor and count."""
        return f"{self.prefix}unread:{reader}"

    def unread_seqs(self, reader: str, ticket_id: int) -> str:
        """The seqs of one ticket the reader has not read (sorted set); the Lua
        scripts build it as the book's name + `:` + the ticket."""
        return f"{self.unread(reader)}:{ticket_id}"

    def readers(self, ticket_id: int) -> str:
        return f"{self.prefix}readers:{ticket_id}"

    def agent_connections(self, agent_id: str) -> str:
        return f"{self.prefix}presence:agent:{agent_id}"

    @property
    def agents_online_status(self) -> str:
        """Aggregated status per agent (hash); the Lua scripts build the same name."""
        return f"{self.prefix}presence:agents"

    @property
    def agents_online(self) -> str:
        """The set of agents online now."""
        return f"{self.prefix}presence:online"

    def alive(self, node_id: str) -> str:
        """A node's marker: its absence tells that node that Redis lost its data."""
        return f"{self.prefix}alive:{node_id}"

    def viewers(self, ticket_id: int) -> str:
        """Who has the ticket open in a console (hash per connection); the Lua scripts
        build the same name (`viewers.py`)."""
        return f"{self.prefix}viewers:{ticket_id}"

    @property
    def viewed_tickets(self) -> str:
        """The tickets that have viewers (set), for the sweep; the scripts build it too."""
        return f"{self.prefix}viewing"

    def customer_connections(self, shop_id: str) -> str:
        return f"{self.prefix}presence:shop:{shop_id}"

    def seen(self, reader: str) -> str:
        """Set while a customer's record is fresh in the database (an hour)."""
        return f"{self.prefix}seen:{reader}"

    def penalty(self, reader: str) -> str:
        """Set while a user closed for abuse cools down."""
        return f"{self.prefix}penalty:{reader}"

    def connections(self, reader: str) -> str:
        return f"{self.prefix}conns:{reader}"

    def rate(self, scope: str, subject: str) -> str:
        return f"{self.prefix}rate:{scope}:{subject}"
