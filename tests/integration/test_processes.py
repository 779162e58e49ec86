"""Whole processes: two nodes on one database, SIGTERM, the embedded default and the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.servers import ROOT, ServerProcess
from tests.wsclient import Client


@pytest.fixture(scope="module")
def two_nodes(server_env):
    tmp = Path(server_env["POMOC_TMP"])
    # Node A keeps two group-commit batches in flight, node B one: both paths run here.
    a = ServerProcess({**server_env, "POMOC_WRITER_CONCURRENCY": "2"}, log_path=tmp / "node-a.log").start()
    b = ServerProcess(dict(server_env), log_path=tmp / "node-b.log").start()
    yield a, b
    a.stop()
    b.stop()


async def test_concurrent_senders_on_two_nodes_get_unique_gapless_seqs(two_nodes, clients, tokens, shop):
    a, b = two_nodes
    owner = await Client.connect(a.url)
    clients.append(owner)
    await owner.hello(tokens.customer(shop))
    opened = await owner.request({"type": "open_ticket", "title": "Wyścig", "body": "start",
                                  "client_id": str(uuid.uuid4())}, "ticket")
    ticket = opened["ticket"]
    watcher = await Client.connect(b.url)
    clients.append(watcher)
    await watcher.hello(tokens.agent(unique("watch")), feed=False)
    await watcher.request({"type": "follow", "ticket": ticket["id"]}, "ticket")

    senders_per_node, messages_each = 8, 25

    async def sender(node: ServerProcess, index: int) -> list[int]:
        client = await Client.connect(node.url)
        clients.append(client)
        await client.hello(tokens.agent(f"{shop}-sender-{index}"), feed=False)
        for i in range(messages_each):
            await client.send({"type": "send", "ticket": ticket["id"], "body": f"{index}:{i}",
                               "client_id": f"{index}:{i}"})
        return [(await client.expect("ack", client_id=f"{index}:{i}", timeout=60))["seq"]
                for i in range(messages_each)]

    results = await asyncio.gather(*(sender(node, n * 100 + i) for n, node in enumerate((a, b))
                                     for i in range(senders_per_node)))
    seqs = sorted(s for result in results for s in result)
    total = 2 * senders_per_node * messages_each
    first = ticket["last_seq"] + 1
    assert seqs == list(range(first, first + total)), "unique and gapless"
    for result in results:
        assert result == sorted(result), "one connection's messages keep their order"
    # The watcher on node B saw every message once, in order, whichever node stored it.
    got = [(await watcher.expect("message", ticket=ticket["id"], timeout=30))["seq"] for _ in range(total)]
    assert got == list(range(first, first + total))


async def test_cross_node_chat_and_reconnect_to_the_other_node(two_nodes, clients, tokens, shop):
    a, b = two_nodes
    token = tokens.customer(shop)
    customer = await Client.connect(a.url)
    clients.append(customer)
    await customer.hello(token)
    ticket = (await customer.request({"type": "open_ticket", "title": "Dostawa", "body": "Gdzie paczka?",
                                      "client_id": "o"}, "ticket"))["ticket"]
    agent = await Client.connect(b.url)
    clients.append(agent)
    await agent.hello(tokens.agent(unique("a")), feed=False)
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Już sprawdzam"}, "ack")
    assert (await customer.expect("message", seq=ack["seq"]))["body"] == "Już sprawdzam"
    await customer.close()
    missed = [(await agent.request({"type": "send", "ticket": ticket["id"], "body": f"m{i}"}, "ack"))["seq"]
              for i in range(3)]
    back = await Client.connect(b.url)  # the other node this time
    clients.append(back)
    await back.hello(token, resume={str(ticket["id"]): ack["seq"]})
    assert [(await back.expect("message", ticket=ticket["id"]))["seq"] for _ in missed] == missed


async def test_sigterm_closes_sockets_with_1001_and_exits_cleanly(server_env, clients, tokens, shop):
    node = ServerProcess(dict(server_env), log_path=Path(server_env["POMOC_TMP"]) / "sigterm.log").start()
    try:
        customer = await Client.connect(node.url)
        clients.append(customer)
        await customer.hello(tokens.customer(shop))
        agent = await Client.connect(node.url)
        clients.append(agent)
        await agent.hello(tokens.agent(unique("a")))
        fresh = await Client.connect(node.url)  # connected, no hello yet
        clients.append(fresh)
        code = await asyncio.to_thread(node.stop, signal.SIGTERM)
        assert code == 0, node.log()[-2000:]
        for client in (customer, agent, fresh):
            assert await client.wait_closed() == 1001
        assert "Traceback" not in node.log()
    finally:
        node.stop(signal.SIGKILL)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _bare_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POMOC_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_embedded_default_serves_with_sqlite_and_the_stand_in(tmp_path):
    # `python -m server` with no configuration, from an empty directory.
    port_probe = ServerProcess({})
    node = ServerProcess(_bare_env(), log_path=tmp_path / "embedded.log", cwd=tmp_path,
                         args=["--port", str(port_probe.port)], port=port_probe.port)
    node.start(inherit_env=False)
    try:
        first_lines = node.log().splitlines()[:3]
        assert f"listening on http://127.0.0.1:{node.port}" in first_lines[0]
        assert "in-process" in first_lines[1] and "sqlite" in first_lines[1]
        assert "token" in node.log().split("{", 1)[0]
        assert (tmp_path / "pomoc.db").exists()
        token = _run(["token", "--role", "customer", "--sub", "u1", "--shop", "demo"], _bare_env(), tmp_path)

        async def chat() -> dict:
            client = await Client.connect(node.url)
            try:
                return await client.hello(token.stdout.strip())
            finally:
                await client.close()

        assert asyncio.run(chat())["principal"]["shop"] == "demo"
    finally:
        assert node.stop() == 0


def test_help_documents_every_subcommand(tmp_path):
    out = _run(["--help"], _bare_env(), tmp_path)
    assert out.returncode == 0
    for command in ("serve", "worker", "migrate", "token"):
        assert command in out.stdout
    serve = _run(["serve", "--help"], _bare_env(), tmp_path)
    assert "--host" in serve.stdout and "--port" in serve.stdout
    token = _run(["token", "--help"], _bare_env(), tmp_path)
    for flag in ("--role", "--sub", "--shop", "--shop-name", "--plan", "--name", "--ttl"):
        assert flag in token.stdout


@pytest.mark.parametrize("args,why", [
    (["token", "--role", "customer", "--sub", "u1"], "customer without --shop"),
    (["token", "--role", "boss", "--sub", "u1"], "unknown role"),
    (["token", "--role", "agent", "--sub", "a", "--ttl", "-5"], "negative ttl"),
    (["token", "--role", "customer", "--sub", "u", "--shop", "s", "--plan", "gold"], "unknown plan"),
])
def test_token_refuses_bad_arguments(tmp_path, args, why):
    out = _run(args, _bare_env(), tmp_path)
    assert out.returncode == 2, why
    assert out.stdout == ""


@pytest.mark.parametrize("env,variable", [
    ({"DATABASE_URL": "mysql://x/y", "POMOC_SECRET": "s" * 40}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x", "POMOC_SECRET": "s" * 40}, "REDIS_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "POMOC_SECRET"),
    ({"PORT": "eighty"}, "PORT"),
    ({"POMOC_CLOCK": "yesterday"}, "POMOC_CLOCK"),
])
def test_bad_configuration_fails_at_startup_naming_the_variable(tmp_path, env, variable):
    out = _run(["serve", "--port", "1"], {**_bare_env(), **env}, tmp_path)
    assert out.returncode == 2
    assert variable in out.stderr
