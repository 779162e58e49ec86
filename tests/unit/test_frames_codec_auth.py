"""The sans-I/O protocol core: frame validation, codecs, tokens, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import msgpack
import pytest

from server.errors import BadRequest, TooLarge, Unauthorized
from server.principal import Role
from server.protocol import frames
from server.protocol.codec import JSON, MSGPACK, negotiate
from server.settings import DEV_SECRET, Settings, SettingsError, normalize_database_url
from server.web.tokens import authenticate, mint

LIMITS = frames.Limits()
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SECRET = "unit-secret-" + "k" * 32


@pytest.mark.parametrize("frame,expected", [
    ({"type": "ping"}, frames.Ping()),
    ({"type": "send", "ticket": 5, "body": "hej", "client_id": "c"}, frames.Send(5, "hej", "c")),
    ({"type": "send", "ticket": "5", "body": "hej", "client_id": 7}, frames.Send(5, "hej", "7")),
    ({"type": "send", "ticket": 5, "body": "hej", "client_id": "c", "internal": True},
     frames.Send(5, "hej", "c", internal=True)),
    ({"type": "send", "ticket": 5, "body": "hej", "client_id": "c", "internal": False}, frames.Send(5, "hej", "c")),
    ({"type": "read", "ticket": 5, "seq": 0}, frames.Read(5, 0)),
    ({"type": "history", "ticket": 5}, frames.History(5, None, None, 50)),
    ({"type": "history", "ticket": 5, "after_seq": 0, "limit": 200}, frames.History(5, None, 0, 200)),
    ({"type": "list_tickets"}, frames.ListTickets(None)),
    ({"type": "list_tickets", "status": "queued"}, frames.ListTickets("queued")),
    ({"type": "follow", "ticket": 9}, frames.Follow(9)),
    ({"type": "typing", "ticket": 9}, frames.Typing(9)),
    ({"type": "presence", "status": "away"}, frames.Presence("away")),
    ({"type": "update_ticket", "ticket": 9, "assignee": None}, frames.UpdateTicket(9, {"assignee": None})),
    ({"type": "hello", "token": "t", "resume": {"3": 7}, "feed": False}, frames.Hello("t", {3: 7}, False)),
])
def test_valid_frames_parse(frame, expected):
    assert frames.parse(frame, LIMITS) == expected


def test_open_ticket_keeps_known_context_and_drops_the_rest():
    parsed = frames.parse({"type": "open_ticket", "title": "  Faktury ", "body": "b", "severity": "minor",
                           "client_id": "x", "context": {"browser": "Firefox", "browser_version": 128,
                                                         "evil": "<script>", "page_url": None}}, LIMITS)
    assert isinstance(parsed, frames.OpenTicket)
    assert parsed.title == "Faktury" and parsed.context == {"browser": "Firefox", "browser_version": "128"}


def test_a_send_without_client_id_gets_one():
    parsed = frames.parse({"type": "send", "ticket": 1, "body": "x"}, LIMITS)
    assert isinstance(parsed, frames.Send) and len(parsed.client_id) == 32


@pytest.mark.parametrize("frame,error", [
    ({}, BadRequest), ({"type": None}, BadRequest), ({"type": "x" * 1000}, BadRequest),
    ({"type": "send", "ticket": 0, "body": "x"}, BadRequest),
    ({"type": "send", "ticket": 2**63, "body": "x"}, BadRequest),
    ({"type": "send", "ticket": "12a", "body": "x"}, BadRequest),
    ({"type": "send", "ticket": 1.5, "body": "x"}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x\x00y"}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x", "internal": "yes"}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x", "internal": 1}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x", "internal": None}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x" * 10_001}, TooLarge),
    ({"type": "send", "ticket": 1, "body": "x", "client_id": ""}, BadRequest),
    ({"type": "send", "ticket": 1, "body": "x", "client_id": "c" * 201}, BadRequest),
    ({"type": "read", "ticket": 1, "seq": -1}, BadRequest),
    ({"type": "read", "ticket": 1, "seq": True}, BadRequest),
    ({"type": "history", "ticket": 1, "limit": 0}, BadRequest),
    ({"type": "history", "ticket": 1, "before_seq": 0}, BadRequest),
    ({"type": "hello", "resume": [1, 2]}, BadRequest),
    ({"type": "hello", "resume": {"x": 1}}, BadRequest),
    ({"type": "hello", "resume": {"1": -1}}, BadRequest),
    ({"type": "hello", "feed": "no"}, BadRequest),
    ({"type": "open_ticket", "title": "t", "body": "b", "context": {"browser": ["x"]}}, BadRequest),
    ({"type": "open_ticket", "title": "t", "body": "b", "context": {"steps_tried": "s" * 3000}}, TooLarge),
    ({"type": "update_ticket", "ticket": 1, "department": ""}, BadRequest),
    ({"type": "update_ticket", "ticket": 1, "severity": "urgent"}, BadRequest),
])
def test_invalid_frames_name_the_problem(frame, error):
    with pytest.raises(error) as raised:
        frames.parse(frame, LIMITS)
    assert raised.value.message


@pytest.mark.parametrize("ref,kept", [("a", "a"), (7, 7), (True, None), ({"x": 1}, None), ("r" * 201, None),
                                      (2**60, None)])
def test_only_plain_refs_are_echoed(ref, kept):
    assert frames.valid_ref({"ref": ref}) == kept


def test_codecs_round_trip_and_reject_garbage():
    frame = {"type": "message", "body": "zażółć", "seq": 3}
    assert JSON.decode(JSON.encode(frame)) == frame
    assert MSGPACK.decode(MSGPACK.encode(frame)) == frame
    for codec, data in ((JSON, b"{"), (JSON, b"[]"), (JSON, b"\xff"), (MSGPACK, b"\xc1"),
                        (MSGPACK, msgpack.packb("x")), (MSGPACK, "text"), (MSGPACK, b"\x81\x01\x02"),
                        (JSON, b"[" * 100_000)):
        with pytest.raises(BadRequest):
            codec.decode(data)


def test_negotiation_prefers_the_clients_order_and_defaults_to_json():
    assert negotiate(["pomoc.v1.msgpack", "pomoc.v1.json"]) == (MSGPACK, "pomoc.v1.msgpack")
    assert negotiate(["chat", "pomoc.v1.json"]) == (JSON, "pomoc.v1.json")
    assert negotiate([]) == (JSON, None)
    assert negotiate(["something-else"]) == (JSON, None)


def test_tokens_round_trip_for_both_roles():
    customer = authenticate(mint(SECRET, role="customer", sub="u1", now=NOW, shop="s1", shop_name="S",
                                 plan="trial", email="a@b.pl"), SECRET, NOW)
    assert (customer.role, customer.shop, customer.plan, customer.key) == (Role.customer, "s1", "trial", "c:s1:u1")
    agent = authenticate(mint(SECRET, role="agent", sub="a1", name="Ala", departments=["billing"], now=NOW),
                         SECRET, NOW)
    assert (agent.is_agent, agent.departments, agent.key) == (True, ("billing",), "a:a1")


def test_expiry_is_judged_by_the_injected_clock():
    token = mint(SECRET, role="agent", sub="a1", name="Ala", now=NOW, ttl=timedelta(minutes=5))
    authenticate(token, SECRET, NOW + timedelta(minutes=4))
    with pytest.raises(Unauthorized, match="expired"):
        authenticate(token, SECRET, NOW + timedelta(minutes=5))


@pytest.mark.parametrize("claims", [
    {"sub": "u", "role": "customer", "shop": "s", "plan": "gold"},
    {"sub": "u", "role": "customer", "shop": ""},
    {"sub": ["u"], "role": "customer", "shop": "s"},
    {"sub": "u", "role": "agent", "name": "A", "departments": "billing"},
    {"role": "agent", "name": "A"},
    {"sub": "u", "role": "customer", "shop": "s", "exp": "tomorrow"},
])
def test_malformed_claims_are_unauthorized(claims):
    claims = {"exp": int((NOW + timedelta(hours=1)).timestamp()), **claims}
    with pytest.raises(Unauthorized):
        authenticate(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, NOW)


def test_none_algorithm_is_refused():
    token = jwt.encode({"sub": "u", "role": "agent", "name": "A", "exp": 4102444800}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        authenticate(token, SECRET, NOW)


def test_settings_embedded_defaults_and_validation():
    settings = Settings.from_env({})
    assert settings.embedded_redis and settings.is_sqlite and settings.secret == DEV_SECRET
    assert settings.demo and settings.run_jobs_in_web
    real = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0",
                              "POMOC_SECRET": "s" * 32, "POMOC_ALLOWED_ORIGINS": "https://a.pl/, https://b.pl",
                              "POMOC_CLOCK": "2026-11-25T10:00:00+01:00"})
    assert real.database_url == "postgresql+asyncpg://u@h/db" and not real.demo
    assert real.allowed_origins == ("https://a.pl", "https://b.pl")
    assert real.clock_start == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert normalize_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    for env, name in (({"PORT": "0"}, "PORT"), ({"POMOC_CLOCK": "2026-11-25T10:00:00"}, "POMOC_CLOCK"),
                      ({"POMOC_HELLO_TIMEOUT": "-1"}, "POMOC_HELLO_TIMEOUT"),
                      ({"POMOC_DATABASE_SCHEMA": "x; drop"}, "POMOC_DATABASE_SCHEMA"),
                      ({"POMOC_DEMO": "maybe"}, "POMOC_DEMO"), ({"POMOC_TIMEZONE": "Mars/Base"}, "POMOC_TIMEZONE")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env(env)
