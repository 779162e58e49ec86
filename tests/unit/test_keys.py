"""Reader keys and Redis names stay apart for any id, and the Lua scripts build the
names `server.realtime.keys` does.

Shop `a:b` user `c` and shop `a` user `b:c` once shared the reader key `c:a:b:c`
(one unread state, one connection cap), and user `u:5`'s unread book was user `u`'s
unread set of ticket 5. The scripts run on the embedded stand-in (fakeredis, in
process); `tests/integration/test_hostile_input.py` runs the same against Redis.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.presence import Beat, Presence
from server.principal import Principal, Role, agent_key, customer_key
from server.realtime.health import RedisHealth
from server.realtime.keys import Keys
from server.realtime.unread import UnreadBook
from server.realtime.viewers import Viewers
from server.rules.records import Author

NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
# Ids made of the characters that matter (separators, the length marker, digits).
IDS = st.text(alphabet="ab:%,1 ", min_size=1, max_size=8)
READERS = st.one_of(st.tuples(st.just("c"), IDS, IDS), st.tuples(st.just("a"), IDS))
SCOPES = st.sampled_from(["user", "shop", "tickets", "agent", "uploads"])  # fixed words in the code


def key_of(reader: tuple[str, ...]) -> str:
    return customer_key(reader[1], reader[2]) if reader[0] == "c" else agent_key(reader[1])


@pytest.mark.parametrize(("reader", "key"), [
    (("c", "s1", "u1"), "c:s1:u1"),  # plain ids: the key every reader had before
    (("a", "agent-7"), "a:agent-7"),
    (("c", "a:b", "c"), "c:%3,1:a:b:c"),
    (("c", "a", "b:c"), "c:%1,3:a:b:c"),
    (("c", "s1", "u:5"), "c:%2,3:s1:u:5"),
    (("c", "50%", "u"), "c:%3,1:50%:u"),
    (("a", "x:y"), "a:%3:x:y"),
])
def test_reader_keys(reader: tuple[str, ...], key: str) -> None:
    assert key_of(reader) == key


def test_the_longest_key_fits_its_columns() -> None:
    assert len(customer_key(":" * 200, ":" * 200)) <= 420  # read_cursors.reader, attachments.uploader


def test_principal_and_author_agree() -> None:
    customer = Principal(Role.customer, "b:c", "Ala", shop="a")
    agent = Principal(Role.agent, "x:y", "Agnieszka")
    assert customer.key == Author.of(customer).key("a") == "c:%1,3:a:b:c"
    assert agent.key == Author.of(agent).key("any") == "a:%3:x:y"


@given(READERS, READERS)
def test_no_two_readers_share_a_key_and_no_key_extends_another(one: tuple[str, ...], other: tuple[str, ...]) -> None:
    a, b = key_of(one), key_of(other)
    if one != other:
        assert a != b
    # What keeps `unread:<reader>:<ticket>` from ever being another reader's book.
    assert not b.startswith(a + ":")


# ------------------------------------------------------------------ Redis names
def _names() -> dict[str, Any]:
    """Every name `Keys` builds, as a strategy of (builder, its arguments)."""
    reader = READERS.map(key_of)
    ticket = st.integers(min_value=1, max_value=2**63 - 1)
    return {
        "shop_channel": st.tuples(IDS), "reader_channel": st.tuples(reader), "unread": st.tuples(reader),
        "unread_seqs": st.tuples(reader, ticket), "readers": st.tuples(ticket), "agent_connections": st.tuples(IDS),
        "alive": st.tuples(IDS), "customer_connections": st.tuples(IDS), "seen": st.tuples(reader),
        "penalty": st.tuples(reader), "connections": st.tuples(reader), "rate": st.tuples(SCOPES, IDS),
        "viewers": st.tuples(ticket), "viewed_tickets": None,
        "inbox_channel": None, "presence_channel": None, "agents_online_status": None, "agents_online": None,
    }


BUILDERS = _names()
NAMES = st.one_of(*(st.tuples(st.just(name), args) for name, args in BUILDERS.items() if args is not None),
                  st.sampled_from([(name, ()) for name, args in BUILDERS.items() if args is None]))


def test_every_builder_is_checked() -> None:
    public = {name for name, _ in inspect.getmembers(Keys) if not name.startswith("_") and name != "prefix"}
    assert public == set(BUILDERS)


def build(keys: Keys, name: str, args: tuple[Any, ...]) -> str:
    value = getattr(keys, name)
    return str(value(*args) if callable(value) else value)


@given(NAMES, NAMES)
def test_two_different_names_are_never_one_name(one: tuple[str, tuple[Any, ...]],
                                                 other: tuple[str, tuple[Any, ...]]) -> None:
    keys = Keys("pomoc:")
    if one != other:
        assert build(keys, *one) != build(keys, *other), (one, other)


async def test_the_lua_scripts_build_the_names_keys_builds() -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("t:")
    first, second, third = customer_key("a:b", "c"), customer_key("a", "b:c"), customer_key("a", "b")
    try:
        book = UnreadBook(redis, keys, RedisHealth(5.0))
        await book.set_readers({5: [first, second, third]})
        for reader in (first, second, third):
            await book.sync(reader, {5: (0, [])})
        grown, rebuild = await book.publish_and_count("n1", [("", b"x", 5, 1, agent_key("agent"), "all")])
        assert sorted(r for r, _, _ in grown) == sorted([first, second, third]) and rebuild == []
        presence = Presence(redis, keys, timedelta(seconds=30))
        await presence.set_agent("x:y", "conn-1", "online", NOW)
        await presence.heartbeat([Beat("customer", "a:b", "conn-2"), Beat("agent", "x:y", "conn-1")], NOW)
        viewers = Viewers(redis, keys, timedelta(seconds=30))
        await viewers.join(5, "conn-1", "x:y", "Anna", NOW)
        await viewers.heartbeat([(5, "conn-1")], NOW)
        assert await viewers.sweep(NOW) == {}
        names = {n.decode() for n in await redis.keys("*")}
        expected = {keys.readers(5), keys.agent_connections("x:y"), keys.agents_online_status, keys.agents_online,
                    "t:presence:announced", keys.customer_connections("a:b"), keys.viewers(5),
                    keys.viewed_tickets}
        for reader in (first, second, third):
            expected |= {keys.unread(reader), keys.unread_seqs(reader, 5)}
        assert names == expected
        for reader in (first, second, third):
            assert (await book.snapshot(reader)).counts == {5: 1}
    finally:
        await redis.aclose()
