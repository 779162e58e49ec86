"""The roster's budgets of connections yet to say hello: who is closed to make room."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from server.chat.connection import EVICTION_LOOKAHEAD, Roster
from server.errors import CLOSE_TRY_AGAIN


@dataclass
class FakeSession:
    closed: list[int] = field(default_factory=list)

    def close(self, code: int, reason: str = "") -> None:
        self.closed.append(code)


@dataclass(eq=False)
class FakeConnection:
    name: str
    session: FakeSession = field(default_factory=FakeSession)
    sent: bool = False

    def heard(self) -> bool:
        return self.sent


def admit(roster: Roster, connection: FakeConnection) -> str | None:
    # Each on its own address: the per-address budget is not what these tests are about.
    return roster.admit(cast(Any, connection), connection.name, connection.heard)


def test_a_full_pending_budget_closes_the_oldest_silent_socket_not_one_whose_hello_is_on_its_way() -> None:
    roster = Roster(max_connections=100, max_pending=3)
    user, flood1, flood2 = FakeConnection("user"), FakeConnection("f1"), FakeConnection("f2")
    for connection in (user, flood1, flood2):
        assert admit(roster, connection) is None
    user.sent = True  # its hello's bytes arrived; the app has not read them yet
    newcomer = FakeConnection("f3")
    assert admit(roster, newcomer) is None
    assert user.session.closed == [] and flood1.session.closed == [CLOSE_TRY_AGAIN]
    assert roster.pending == 3


def test_when_every_pending_socket_has_spoken_the_oldest_goes() -> None:
    roster = Roster(max_connections=100, max_pending=2)
    first, second = FakeConnection("a", sent=True), FakeConnection("b", sent=True)
    admit(roster, first)
    admit(roster, second)
    assert admit(roster, FakeConnection("c")) is None
    assert first.session.closed == [CLOSE_TRY_AGAIN] and second.session.closed == []


def test_the_search_for_a_silent_socket_looks_only_a_bounded_way() -> None:
    # Sockets that sent a partial frame and stalled count as heard; past the look-ahead
    # the oldest is closed, so each admission costs the same however many there are.
    roster = Roster(max_connections=1000, max_pending=EVICTION_LOOKAHEAD + 1)
    talkers = [FakeConnection(f"t{i}", sent=True) for i in range(EVICTION_LOOKAHEAD)]
    silent = FakeConnection("silent")
    for connection in (*talkers, silent):
        admit(roster, connection)
    admit(roster, FakeConnection("new"))
    assert talkers[0].session.closed == [CLOSE_TRY_AGAIN] and silent.session.closed == []


def test_an_identified_connection_is_never_closed_to_make_room() -> None:
    roster = Roster(max_connections=2, max_pending=2)
    known, waiting = FakeConnection("known"), FakeConnection("waiting")
    admit(roster, known)
    roster.identified(cast(Any, known))
    admit(roster, waiting)
    assert admit(roster, FakeConnection("new")) is None  # the node is full: the pending one makes room
    assert waiting.session.closed == [CLOSE_TRY_AGAIN] and known.session.closed == []
