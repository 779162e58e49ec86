"""Identity's pure parts: the `auth` frame, the expiry views, who counts as the same
principal, the demo guard in the settings, and the security headers by path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from server.principal import Principal, Role
from server.protocol import frames, views
from server.settings import Settings, SettingsError
from server.web.headers import CONSOLE, DEMO, NOTHING, SCRIPT, help_policy, policy_for
from server.web.reauth import same_principal
from tests.fast.pair import Peer, customer

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_auth_parses_and_is_refused_before_hello() -> None:
    assert frames.parse({"type": "auth", "token": "t"}, frames.Limits()) == frames.Auth("t")
    peer = Peer()
    assert peer.session.receive(json.dumps({"type": "auth", "token": "t", "ref": 3}), 0.0) is None
    (error,) = peer.frames()
    assert (error["code"], error["ref"]) == ("unauthorized", 3)


def test_an_open_session_hands_auth_to_the_edge() -> None:
    peer = Peer()
    peer.open_as(customer())
    peer.frames()
    incoming = peer.session.receive(json.dumps({"type": "auth", "token": "t", "ref": "a"}), 0.0)
    assert incoming is not None and incoming.request == frames.Auth("t") and incoming.ref == "a"


def test_expiry_is_an_instant_and_whole_seconds_left() -> None:
    exp = NOW.timestamp() + 90.7
    assert views.authenticated(exp, NOW) == {"type": "authenticated", "expires_at": "2026-11-25T10:01:30.700000+00:00",
                                             "expires_in": 90}
    assert views.expiry(NOW.timestamp() - 5, NOW)["expires_in"] == 0  # never negative


@pytest.mark.parametrize("other,same", [
    (Principal(Role.customer, "u1", "Jan", shop="s1", plan="priority"), True),  # other claims may change
    (Principal(Role.customer, "u2", "Jan", shop="s1"), False),
    (Principal(Role.customer, "u1", "Jan", shop="s2"), False),
    (Principal(Role.agent, "u1", "Jan"), False),
])
def test_the_same_principal_is_role_id_and_shop(other: Principal, same: bool) -> None:
    assert same_principal(Principal(Role.customer, "u1", "Jan", shop="s1"), other) is same


REAL = {"REDIS_URL": "redis://127.0.0.1:6379/0", "POMOC_SECRET": "s" * 40}


@pytest.mark.parametrize("env,refused", [
    ({}, False),  # embedded: the demo is on by default
    ({"POMOC_DEMO": "1", "DATABASE_URL": "sqlite:///other.db", "POMOC_SECRET": "s" * 40}, False),  # one machine
    ({**REAL}, False),  # off by default on real data
    ({**REAL, "POMOC_DEMO": "1"}, True),
    ({"DATABASE_URL": "postgresql://u@h/db", "POMOC_SECRET": "s" * 40, "POMOC_DEMO": "1"}, True),
    ({**REAL, "POMOC_DEMO": "1", "POMOC_DEMO_ON_REAL_DATA": "1"}, False),
])
def test_the_demo_on_real_data_needs_the_loud_override(env: dict[str, str], refused: bool) -> None:
    if refused:
        with pytest.raises(SettingsError, match="POMOC_DEMO_ON_REAL_DATA"):
            Settings.from_env(env)
    else:
        settings = Settings.from_env(env)
        assert settings.demo_on_real_data is (env.get("POMOC_DEMO_ON_REAL_DATA") == "1")


@pytest.mark.parametrize("path,policy", [
    ("/agent", CONSOLE), ("/agent/", CONSOLE), ("/agent/console.js", CONSOLE), ("/agent/console.css", CONSOLE),
    ("/demo", DEMO), ("/embed.js", SCRIPT), ("/demo/token", NOTHING), ("/api/attachments/x", NOTHING),
    ("/healthz", NOTHING), ("/agentx", NOTHING),
])
def test_each_path_gets_its_policy(path: str, policy: dict[str, str]) -> None:
    assert policy_for(path, {}) == policy


def test_help_pages_are_framed_only_by_pomoc_and_the_allowed_shops() -> None:
    listed = help_policy(("https://shop.example", "https://admin.example"))["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://shop.example https://admin.example" in listed
    assert "script-src" not in listed and "default-src 'none'" in listed
    assert "frame-ancestors *" in help_policy(("*",))["Content-Security-Policy"]
    assert "'unsafe-inline'" not in CONSOLE["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in CONSOLE["Content-Security-Policy"]
