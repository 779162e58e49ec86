"""`GET /metrics` on real server processes, with Redis and PostgreSQL and in embedded mode.

A customer and an agent exchange messages on a real node; its metrics, parsed by
Prometheus' own parser, show them connected by role, the messages stored and
delivered in matching numbers, the commits and hellos observed, and no label that
names a ticket, shop or user. The token guards the endpoint; the worker's own
endpoint (its own port) counts the mail it delivered to a real SMTP server, and in
embedded mode the web process, which runs the jobs itself, counts them on its own.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import services
from tests.conftest import _drop_schema, database_env, migrate, unique
from tests.mailing import open_ticket
from tests.servers import ROOT, ServerProcess, free_port
from tests.smtp import Inbox
from tests.wsclient import join

TOKEN = "metrics-" + "t" * 24
# Every label a Pomoc metric may carry (`le`: a histogram's buckets).
LABELS = {"role", "outcome", "path", "author", "operation", "error", "channel", "job", "le"}
BOUNDED = {"role": {"customer", "agent", "pending", "none"}, "outcome": {"ok", "refused", "failed", "sent"},
           "path": {"group", "single"}, "author": {"customer", "agent", "system"}, "channel": {"mail", "sms"}}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module", params=["postgresql", "embedded"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def node(mode: str, request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp(f"metrics-{mode}")
    common = {"POMOC_SECRET": services.SECRET, "POMOC_CLOCK": services.WORKING_CLOCK, "POMOC_METRICS_TOKEN": TOKEN,
              "POMOC_LOG_LEVEL": "INFO", "POMOC_JOBS_INTERVAL": "0.3", "POMOC_MAIL_FROM": "Pomoc <no-reply@pomoc.test>"}
    schema = None
    if mode == "postgresql":
        request.getfixturevalue("postgres_schema")
        schema = f"{services.PG_SCHEMA}_metrics_{uuid.uuid4().hex[:6]}"
        env = {**database_env("postgresql", tmp, schema), "REDIS_URL": redis_url,
               "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:", **common}
        migrate(env)
        proc = ServerProcess(env, log_path=tmp / "node.log").start()
    else:
        # No DATABASE_URL, no REDIS_URL: a SQLite file, the stand-in, the jobs in the web process.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POMOC_", "DATABASE_URL", "REDIS_URL"))}
        env.update({"PYTHONPATH": str(ROOT), **common})
        proc = ServerProcess(env, cwd=tmp, log_path=tmp / "node.log").start(inherit_env=False)
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log(), proc.log()[-3000:]
    if schema:
        _drop_schema(schema)


def get(url: str, authorization: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method,
                                     headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _lower(response.headers.items()), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers.items()), err.read().decode()


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(base: str) -> Samples:
    status, headers, text = await asyncio.to_thread(get, base + "/metrics", f"Bearer {TOKEN}")
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def until(base: str, condition: Callable[[Samples], bool], what: str, timeout: float = 20.0) -> Samples:
    """The node's metrics once `condition` holds (they are another process's state)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(base)
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            shown = {k: v for k, v in samples.items() if k[0].startswith(("pomoc_connections", "pomoc_mails"))}
            raise AssertionError(f"metrics never showed {what} within {timeout} s: {shown}")
        await asyncio.sleep(0.1)  # polling another process's state for a condition, bounded by the deadline


def connected(customers: int, agents: int) -> Callable[[Samples], bool]:
    return lambda s: (value(s, "pomoc_connections", role="customer") == customers
                      and value(s, "pomoc_connections", role="agent") == agents)


def assert_bounded(samples: Samples, *ids: str) -> None:
    for name, labels in samples:
        assert name.startswith(("pomoc_", "python_", "process_")), name
        for label, label_value in labels:
            assert label in LABELS, (name, label)
            if label in BOUNDED:
                assert label_value in BOUNDED[label], (name, label, label_value)
            assert label == "le" or label_value not in ids, (name, label, label_value)


async def test_a_conversation_moves_the_metrics(mode: str, node: ServerProcess, clients, tokens, shop) -> None:
    before = await until(node.http, connected(0, 0), "no connections left from other tests")
    agent_id = unique("agent")
    customer, _ = await join(node, clients, tokens.customer(shop, sub="owner-m"))
    agent, _ = await join(node, clients, tokens.agent(agent_id), feed=False)
    ticket, _ = await open_ticket(customer, title="Płatności")  # stores its message and the acknowledgment
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    for i in range(3):
        ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": f"odpowiedź {i}",
                                   "client_id": f"a{i}"}, "ack")
        await customer.expect("message", ticket=ticket["id"], seq=ack["seq"])
    for i in range(2):
        ack = await customer.request({"type": "send", "ticket": ticket["id"], "body": f"pytanie {i}",
                                      "client_id": f"c{i}"}, "ack")
        await agent.expect("message", ticket=ticket["id"], seq=ack["seq"])
    stored_in_ticket = ack["seq"]  # seqs are gapless: every message of the ticket, Pomoc's own too

    after = await until(node.http, connected(1, 1), "the customer and the agent connected")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Stored: the opening message and 2 replies from the customer, 3 from the agent, and
    # Pomoc's own (the acknowledgment and whatever else opening the ticket adds).
    assert delta("pomoc_messages_stored_total", author="customer") == 3
    assert delta("pomoc_messages_stored_total", author="agent") == 3
    assert delta("pomoc_messages_stored_total", author="system") >= 1
    assert delta("pomoc_messages_stored_total") == stored_in_ticket
    # Delivered: each of the 5 sends reached the other party once (a sender gets its ack, not a copy).
    assert delta("pomoc_messages_delivered_total") == 5
    # Every send went through one commit or another: their sizes add up to the sends.
    assert delta("pomoc_commit_batch_messages_sum") == 5
    commits = delta("pomoc_commit_seconds_count")
    assert 1 <= commits <= 5 and delta("pomoc_commit_seconds_sum") > 0
    if mode == "postgresql":
        assert delta("pomoc_commit_seconds_count", path="group") >= 1
    else:
        assert delta("pomoc_commit_seconds_count", path="single") == 5  # SQLite: one send per transaction
    assert delta("pomoc_hello_seconds_count", role="customer", outcome="ok") == 1
    assert delta("pomoc_hello_seconds_count", role="agent", outcome="ok") == 1
    assert delta("pomoc_hello_seconds_sum") > 0
    assert value(after, "pomoc_redis_errors_total") == 0 and value(after, "pomoc_database_errors_total") == 0
    for gauge in ("pomoc_outbox_backlog", "pomoc_queued_tickets"):
        assert value(after, gauge) >= 0 and any(name == gauge for name, _ in after)
    assert_bounded(after, shop, str(ticket["id"]), agent_id, "owner-m", f"{shop}:owner-m")

    await customer.close()
    await agent.close()
    await until(node.http, connected(0, 0), "both connections closed")


async def test_the_token_guards_the_endpoint(node: ServerProcess) -> None:
    for authorization in (None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "):
        status, headers, body = await asyncio.to_thread(get, node.http + "/metrics", authorization)
        assert status == 401, (authorization, status)
        assert headers["www-authenticate"] == "Bearer" and '"unauthorized"' in body and "pomoc_" not in body
    status, _, body = await asyncio.to_thread(get, node.http + "/metrics", f"bearer {TOKEN}")
    assert status == 200 and "pomoc_connections" in body
    status, _, _ = await asyncio.to_thread(get, node.http + "/metrics", f"Bearer {TOKEN}", "POST")
    assert status == 405


async def test_a_bad_hello_is_observed_as_refused(node: ServerProcess, clients, tokens, shop) -> None:
    before = await scrape(node.http)
    client, _ = await join(node, clients, tokens.customer(shop))
    other = await type(client).connect(node.url)
    clients.append(other)
    answer = await other.request({"type": "hello", "token": tokens.expired(shop)}, "welcome")
    assert answer["type"] == "error"
    after = await until(node.http, lambda s: value(s, "pomoc_hello_seconds_count", outcome="refused")
                        > value(before, "pomoc_hello_seconds_count", outcome="refused"), "the refused hello")
    assert value(after, "pomoc_hello_seconds_count", role="none", outcome="refused") >= 1
    assert_bounded(after, shop)


async def test_the_jobs_count_the_mail_they_deliver(mode: str, node: ServerProcess, clients, tokens, shop,
                                                    tmp_path: Path) -> None:
    if mode == "embedded":
        # The web process runs the jobs itself: the same counters, on its own /metrics (the local mailbox).
        base, inbox, worker = node.http, None, None
    else:
        inbox = Inbox().start()
        port = free_port()
        worker = ServerProcess({**node.env, "POMOC_SMTP_URL": inbox.url, "POMOC_WORKER_METRICS_PORT": str(port),
                                "HOST": "127.0.0.1"}, port=port, args=["worker"],
                               log_path=tmp_path / "worker.log").start()
        base = worker.http
    try:
        before = await scrape(base)
        customer, _ = await join(node, clients, tokens.customer(shop, email="owner@shop.example"))
        ticket, _ = await open_ticket(customer, title="Faktury")
        if inbox is not None:
            mails = await asyncio.to_thread(inbox.wait_for, 1, 60.0,
                                            lambda m: f"#{ticket['id']}]" in (m["Subject"] or ""))
            assert mails
        after = await until(base, lambda s: value(s, "pomoc_mails_total", outcome="sent")
                            > value(before, "pomoc_mails_total", outcome="sent"), "the mail sent", timeout=60)
        assert value(after, "pomoc_job_seconds_count", job="mail.deliver") > value(
            before, "pomoc_job_seconds_count", job="mail.deliver")
        assert value(after, "pomoc_mails_total", outcome="failed") == 0
        assert value(after, "pomoc_job_failures_total") == 0
        assert_bounded(after, shop, str(ticket["id"]), "owner@shop.example")
        if worker is not None:
            status, _, _ = await asyncio.to_thread(get, base + "/metrics")
            assert status == 401  # the worker's endpoint is guarded by the same token
            assert value(after, "pomoc_connections") == 0  # a worker holds no sockets
    finally:
        if worker is not None:
            assert worker.stop() == 0
            assert "Traceback" not in worker.log(), worker.log()[-3000:]
        if inbox is not None:
            inbox.stop()


def test_a_taken_metrics_port_stops_the_worker_with_the_reason(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("POMOC_", "DATABASE_URL", "REDIS_URL"))}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env.update({"PYTHONPATH": str(ROOT), "POMOC_WORKER_METRICS_PORT": str(taken.getsockname()[1])})
        done = subprocess.run([sys.executable, "-m", "server", "worker"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "POMOC_WORKER_METRICS_PORT" in done.stderr and "Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
