"""Who may act, and until when, against real server processes (real Redis, SQLite and PostgreSQL).

Seed 000: access ends when a person's access ends. A connection lives only as long
as its token: at `exp` the server closes it with 4401, unless the client said
`auth` with a fresh token for the same principal first. Tokens here live a few
seconds; every wait is for a frame or a close, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from server.web.tokens import mint
from tests import services
from tests.conftest import migrate, unique
from tests.servers import ROOT, ServerProcess, free_port
from tests.wsclient import Client, join

TTL = timedelta(seconds=6)  # long enough for a hello on a loaded machine, short enough to wait for


def short(role: str, sub: str, *, ttl: timedelta = TTL, shop: str | None = None) -> str:
    """A token on real time (servers judge expiry on the wall clock) that lives `ttl`."""
    now = datetime.now(UTC)
    if role == "agent":
        return mint(services.SECRET, role="agent", sub=sub, name=sub.title(), now=now, ttl=ttl)
    return mint(services.SECRET, role="customer", sub=sub, now=now, ttl=ttl, shop=shop, shop_name="Sklep")


def exp_of(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


async def open_ticket(client: Client) -> int:
    reply = await client.request({"type": "open_ticket", "title": "Płatności nie działają",
                                  "body": "Klienci nie mogą zapłacić.", "severity": "major",
                                  "client_id": str(uuid.uuid4())}, "ticket")
    assert reply["type"] == "ticket", reply
    return int(reply["ticket"]["id"])


async def send(client: Client, ticket: int, body: str) -> dict:
    return await client.request({"type": "send", "ticket": ticket, "body": body, "client_id": str(uuid.uuid4())},
                                "ack")


async def test_customer_and_agent_connections_end_with_4401_at_exp(server, clients, shop):
    customer_token = short("customer", unique("owner"), shop=shop)
    agent_token = short("agent", unique("agent"))
    customer, welcome = await join(server, clients, customer_token)
    agent, agent_welcome = await join(server, clients, agent_token)
    for got, token in ((welcome, customer_token), (agent_welcome, agent_token)):
        # The welcome says when, as an instant and as seconds by the server's clock.
        assert datetime.fromisoformat(got["expires_at"]) == datetime.fromtimestamp(exp_of(token), UTC)
        assert isinstance(got["expires_in"], int) and 0 <= got["expires_in"] <= TTL.total_seconds()
    ticket = await open_ticket(customer)
    assert (await send(customer, ticket, "Przed wygaśnięciem"))["type"] == "ack"

    ends = TTL.total_seconds() + 10
    codes = await asyncio.gather(customer.wait_closed(ends), agent.wait_closed(ends))
    assert codes == [4401, 4401]
    # At exp, not before it (the server and this test share the machine's clock).
    assert time.time() >= min(exp_of(customer_token), exp_of(agent_token)) - 0.05


async def test_auth_with_a_fresh_token_keeps_the_connection_past_the_first_exp(server, clients, shop):
    sub = unique("owner")
    first = short("customer", sub, shop=shop)
    renewed, _ = await join(server, clients, first)
    control, _ = await join(server, clients, first)  # the same token, never renewed
    ticket = await open_ticket(renewed)

    second = short("customer", sub, shop=shop, ttl=TTL * 2)
    answer = await renewed.request({"type": "auth", "token": second}, "authenticated")
    assert answer["type"] == "authenticated", answer
    assert datetime.fromisoformat(answer["expires_at"]) == datetime.fromtimestamp(exp_of(second), UTC)
    assert 0 < answer["expires_in"] <= (TTL * 2).total_seconds()

    # The control connection closing marks the first token's exp: it has passed.
    assert await control.wait_closed(TTL.total_seconds() + 10) == 4401
    assert time.time() >= exp_of(first) - 0.05
    ack = await send(renewed, ticket, "Po pierwszym wygaśnięciu")
    assert ack["type"] == "ack", ack

    # The renewed connection lives until the second token's exp, then it ends too.
    assert await renewed.wait_closed((TTL * 2).total_seconds() + 10) == 4401
    assert time.time() >= exp_of(second) - 0.05


async def test_auth_with_another_principals_token_is_refused_and_the_old_expiry_stands(server, clients, shop):
    sub = unique("owner")
    first = short("customer", sub, shop=shop)
    customer, _ = await join(server, clients, first)
    long = timedelta(hours=1)
    refused = {
        "another user of the shop": (short("customer", unique("other"), shop=shop, ttl=long), "forbidden"),
        "the same id in another shop": (short("customer", sub, shop=unique("shop"), ttl=long), "forbidden"),
        "an agent": (short("agent", sub, ttl=long), "forbidden"),
        "an expired token": (mint(services.SECRET, role="customer", sub=sub, shop=shop,
                                  now=datetime.now(UTC) - timedelta(hours=2), ttl=timedelta(hours=1)),
                             "unauthorized"),
        "a token of another secret": (jwt.encode({"sub": sub, "role": "customer", "shop": shop,
                                                  "exp": int(time.time()) + 3600}, "another-secret-" + "y" * 30,
                                                 algorithm="HS256"), "unauthorized"),
        "no token": (None, "unauthorized"),
    }
    for why, (token, code) in refused.items():
        answer = await customer.request({"type": "auth", "token": token}, "authenticated")
        assert (answer["type"], answer.get("code")) == ("error", code), why
    await customer.request({"type": "ping"}, "pong")  # the connection stays meanwhile

    agent_first = short("agent", unique("agent"))
    agent, _ = await join(server, clients, agent_first)
    answer = await agent.request({"type": "auth", "token": short("customer", "x", shop=shop, ttl=long)},
                                 "authenticated")
    assert (answer["type"], answer.get("code")) == ("error", "forbidden")

    ends = TTL.total_seconds() + 10
    assert await asyncio.gather(customer.wait_closed(ends), agent.wait_closed(ends)) == [4401, 4401]
    assert time.time() >= exp_of(first) - 0.05


async def test_auth_before_hello_is_unauthorized(server, clients, shop):
    client = await Client.connect(server.url)
    clients.append(client)
    answer = await client.request({"type": "auth", "token": short("customer", "u", shop=shop)}, "authenticated")
    assert (answer["type"], answer.get("code")) == ("error", "unauthorized")


# ----------------------------------------------------------- the demo on real data
def _serve_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POMOC_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp / 'pomoc.db'}",
                "REDIS_URL": services.REDIS_URL, "POMOC_SECRET": services.SECRET,
                "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:", **extra})
    return env


def test_serve_refuses_the_demo_on_a_real_redis_or_database(tmp_path):
    port = free_port()
    for env in (_serve_env(tmp_path, POMOC_DEMO="1"),
                _serve_env(tmp_path, POMOC_DEMO="1", DATABASE_URL=services.POSTGRES_URL, REDIS_URL="memory://")):
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            pytest.fail("the server started with POMOC_DEMO=1 on real data")
        assert proc.returncode == 2, err
        assert "POMOC_DEMO" in err and "POMOC_DEMO_ON_REAL_DATA" in err, err
        assert "listening" not in out


def test_the_override_starts_the_demo_on_real_data_with_a_warning(tmp_path, redis_url):
    env = _serve_env(tmp_path, POMOC_DEMO="1", POMOC_DEMO_ON_REAL_DATA="1", POMOC_LOG_LEVEL="INFO")
    migrate(env)
    node = ServerProcess(env, log_path=tmp_path / "server.log", cwd=tmp_path).start(inherit_env=False)
    try:
        with urllib.request.urlopen(node.http + "/demo/token?role=agent", timeout=10) as answer:
            assert answer.status == 200
        log = node.log()
        assert "demo.on_real_data" in log and "POMOC_DEMO_ON_REAL_DATA" in log
    finally:
        assert node.stop() == 0
