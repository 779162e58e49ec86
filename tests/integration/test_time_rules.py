"""Working hours, SLA deadlines, the off-hours queue and escalations, end to end:
servers whose clock starts at a chosen instant (POMOC_CLOCK), jobs run by
`python -m server jobs --once --at …` processes, a real webhook receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import uuid
from datetime import datetime, timedelta

import pytest

from tests.conftest import Tokens, unique
from tests.receiver import Receiver
from tests.servers import ROOT, ServerProcess
from tests.wsclient import Client, join

WEDNESDAY_BEFORE_CHRISTMAS = "2026-12-23T16:30:00+01:00"
SATURDAY_NOON = "2026-11-21T12:00:00+01:00"
SUNDAY_NIGHT = "2026-11-22T23:00:00+01:00"


@pytest.fixture
def receiver():
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture
def clock_with_hook(at_clock, receiver):
    """Servers at a chosen clock whose escalations go to the test's receiver."""

    def start(clock: str, like: ServerProcess | None = None) -> tuple[ServerProcess, Tokens]:
        return at_clock(clock, like, POMOC_WEBHOOK_URL=receiver.url, POMOC_WEBHOOK_SECRET="hook-secret")

    return start


async def run_jobs(node: ServerProcess, at: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "jobs", "--once", "--at", at, cwd=ROOT,
        env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def near(value: str, expected: str, seconds: float = 60) -> bool:
    """The server's clock runs on from POMOC_CLOCK: deadlines drift by the test's runtime."""
    delta = datetime.fromisoformat(value) - datetime.fromisoformat(expected)
    return 0 <= delta.total_seconds() < seconds




async def open_ticket(client: Client, severity: str, title: str = "Problem") -> tuple[dict, list[dict]]:
    reply = await client.request({"type": "open_ticket", "title": title, "body": "Opis problemu",
                                  "severity": severity, "client_id": str(uuid.uuid4())}, "ticket")
    assert reply["type"] == "ticket", reply
    ticket = reply["ticket"]
    first = [await client.expect("message", ticket=ticket["id"]) for _ in range(2)]
    return ticket, first


async def test_minor_ticket_before_christmas_names_the_due_time_across_the_holidays(clock_with_hook, clients):
    node, tokens = clock_with_hook(WEDNESDAY_BEFORE_CHRISTMAS)
    customer, welcome = await join(node, clients, tokens.customer(unique("shop")))
    assert welcome["service"] == {"open": True, "next_open": None}
    ticket, (description, ack) = await open_ticket(customer, "minor", "Faktury")
    assert description["author"]["kind"] == "customer"
    assert ack["author"]["kind"] == "system"
    assert "do czwartku 31.12, 16:30" in ack["body"]
    assert "drobne" in ack["body"] or "minor" in ack["body"]
    assert near(ticket["sla_due_at"], "2026-12-31T15:30:00+00:00")
    assert ticket["queued_until"] is None


async def test_a_question_on_saturday_waits_until_monday_and_reaches_agents_once(clock_with_hook, clients):
    node, tokens = clock_with_hook(SATURDAY_NOON)
    agent, welcome = await join(node, clients, tokens.agent(unique("a")))
    assert welcome["service"] == {"open": False, "next_open": "2026-11-23T08:00:00+00:00"}
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, (_, ack) = await open_ticket(customer, "question", "Jak ustawić kupon")
    assert ticket["queued_until"] == "2026-11-23T08:00:00+00:00"
    assert "poniedziałek 23.11 o 9:00" in ack["body"]
    assert ack["queued_until"] == "2026-11-23T08:00:00+00:00"
    follow_up = await customer.request({"type": "send", "ticket": ticket["id"], "body": "I jeszcze jedno"}, "ack")
    assert follow_up["queued_until"] == "2026-11-23T08:00:00+00:00"
    # Nothing reaches the agent before the opening.
    early = await run_jobs(node, "2026-11-23T08:59:59+01:00")
    assert early["done"]["queue.release"] == 0
    await agent.request({"type": "ping"}, "pong")
    assert not [f for f in agent.pending("ticket") if f["ticket"]["id"] == ticket["id"]]
    queued = await agent.request({"type": "list_tickets", "status": "queued"}, "tickets")
    assert [t["id"] for t in queued["tickets"]] == [ticket["id"]]
    # Two workers at the opening: released once.
    results = await asyncio.gather(run_jobs(node, "2026-11-23T09:00:00+01:00"),
                                   run_jobs(node, "2026-11-23T09:00:00+01:00"))
    # The ticket and every held message (description, acknowledgment, the request for
    # missing facts, the follow-up), each released by exactly one of them.
    held = follow_up["seq"]
    assert sum(r["done"]["queue.release"] for r in results) == 1 + held
    seen = await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"])
    assert seen["ticket"]["queued_until"] is None
    again = await run_jobs(node, "2026-11-23T09:05:00+01:00")
    assert again["done"]["queue.release"] == 0
    await agent.request({"type": "ping"}, "pong")
    assert not [f for f in agent.pending("ticket") if f["ticket"]["id"] == ticket["id"]], "once"


async def test_a_held_follow_up_reaches_a_following_agent_only_at_release(clock_with_hook, clients):
    node, tokens = clock_with_hook("2026-11-20T16:58:00+01:00")  # Friday, two minutes before closing
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "minor")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    live = await customer.request({"type": "send", "ticket": ticket["id"], "body": "jeszcze otwarte"}, "ack")
    assert live["queued_until"] is None
    await agent.expect("message", seq=live["seq"])
    # After 17:00 the same customer's message waits (server clock runs on; jump with a new server).
    late_node, late_tokens = clock_with_hook("2026-11-20T17:30:00+01:00", like=node)
    late_customer, _ = await join(late_node, clients, late_tokens.customer(ticket["shop"]))
    held = await late_customer.request({"type": "send", "ticket": ticket["id"], "body": "po godzinach"}, "ack")
    assert held["queued_until"] == "2026-11-23T08:00:00+00:00"
    await agent.request({"type": "ping"}, "pong")
    assert not [m for m in agent.pending("message") if m["seq"] == held["seq"]]
    await run_jobs(late_node, "2026-11-23T09:00:00+01:00")
    released = await agent.expect("message", seq=held["seq"])
    assert released["body"] == "po godzinach" and released["queued_until"] is None


async def test_a_worker_releasing_a_held_follow_up_refreshes_the_agents_inbox(clock_with_hook, clients):
    """The ticket itself was never queued: only its follow-up was. The jobs process
    announces the release like a web node, its inbox feed included."""
    node, tokens = clock_with_hook("2026-11-20T16:58:00+01:00")  # Friday, two minutes before closing
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "minor")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))  # the inbox feed, following nothing
    late_node, late_tokens = clock_with_hook("2026-11-20T17:30:00+01:00", like=node)
    late_customer, _ = await join(late_node, clients, late_tokens.customer(ticket["shop"]))
    held = await late_customer.request({"type": "send", "ticket": ticket["id"], "body": "po godzinach"}, "ack")
    assert held["queued_until"] == "2026-11-23T08:00:00+00:00"
    await agent.request({"type": "ping"}, "pong")
    done = await run_jobs(late_node, "2026-11-23T09:00:00+01:00")
    assert done["done"]["queue.release"] == 1
    row = await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                             and f["ticket"]["last_seq"] == held["seq"])
    assert row["ticket"]["queued_until"] is None


async def test_a_critical_ticket_on_sunday_reaches_agents_at_once_and_fires_the_webhook_once(
        clock_with_hook, clients, receiver):
    node, tokens = clock_with_hook(SUNDAY_NIGHT)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    customer, _ = await join(node, clients, tokens.customer(unique("shop"), shop_name="Sklep Zielony"))
    ticket, (_, ack) = await open_ticket(customer, "critical", "Sklep nie przyjmuje zamówień")
    assert ticket["queued_until"] is None
    assert near(ticket["sla_due_at"], "2026-11-23T14:00:00+00:00")  # 16 h on the clock, Sunday or not
    assert "agent" in ack["body"].lower() or "konsultant" in ack["body"].lower()
    await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"], timeout=5)
    await asyncio.gather(run_jobs(node, "2026-11-22T23:00:05+01:00"), run_jobs(node, "2026-11-22T23:00:05+01:00"))
    calls = receiver.wait_for(1)
    critical = [c for c in calls if c.json["event"] == "ticket.critical"]
    assert len(critical) == 1, [(c.headers["X-Pomoc-Delivery"], c.headers["X-Pomoc-Timestamp"], c.json["ticket_id"])
                                for c in critical]
    call = critical[0]
    assert call.json["ticket_id"] == ticket["id"] and call.json["shop_name"] == "Sklep Zielony"
    expected = hmac.new(b"hook-secret", call.headers["X-Pomoc-Timestamp"].encode() + b"." + call.body,
                        hashlib.sha256).hexdigest()
    assert call.headers["X-Pomoc-Signature"] == f"sha256={expected}"
    await run_jobs(node, "2026-11-22T23:10:00+01:00")
    again = [c for c in receiver.requests if c.json["event"] == "ticket.critical"]
    assert len(again) == 1, [(c.headers["X-Pomoc-Delivery"], c.headers["X-Pomoc-Timestamp"], c.json["ticket_id"])
                             for c in again]


async def test_an_agent_answering_a_queued_ticket_off_hours_takes_it_out_of_the_queue(clock_with_hook, clients):
    node, tokens = clock_with_hook(SATURDAY_NOON)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "question", "Kupon nie działa")
    assert ticket["queued_until"] == "2026-11-23T08:00:00+00:00"
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    watcher, _ = await join(node, clients, tokens.agent(unique("w")))  # the inbox feed, not looking at it
    queued = await agent.request({"type": "list_tickets", "status": "queued"}, "tickets")
    assert ticket["id"] in [t["id"] for t in queued["tickets"]]
    # Merely looking: the ticket stays queued, but its messages reach the agent live.
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    more = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Kod RABAT10"}, "ack")
    assert more["queued_until"] == "2026-11-23T08:00:00+00:00"
    await agent.expect("message", seq=more["seq"])
    still = await agent.request({"type": "list_tickets", "status": "queued"}, "tickets")
    assert ticket["id"] in [t["id"] for t in still["tickets"]]
    # Answering: it is being handled now.
    answer = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzam kod"}, "ack")
    out = await customer.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                                and f["ticket"]["queued_until"] is None)
    assert out["ticket"]["status"] == "open"
    await customer.expect("message", seq=answer["seq"])
    await watcher.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                         and f["ticket"]["queued_until"] is None)
    gone = await agent.request({"type": "list_tickets", "status": "queued"}, "tickets")
    assert ticket["id"] not in [t["id"] for t in gone["tickets"]]
    # From then on everything flows live: the customer's reply and its status change.
    back = await customer.request({"type": "send", "ticket": ticket["id"], "body": "problem wrócił"}, "ack")
    assert back["queued_until"] is None
    assert (await agent.expect("message", seq=back["seq"]))["body"] == "problem wrócił"
    await customer.request({"type": "update_ticket", "ticket": ticket["id"], "status": "resolved"}, "ticket")
    await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                       and f["ticket"]["status"] == "resolved")
    # Nothing is left for the Monday release to deliver twice.
    assert (await run_jobs(node, "2026-11-23T09:00:00+01:00"))["done"]["queue.release"] == 0


async def test_raising_a_queued_ticket_to_critical_releases_it_at_once_and_fires_the_webhook_once(
        clock_with_hook, clients, receiver):
    node, tokens = clock_with_hook(SATURDAY_NOON)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "minor", "Zamówienia stoją")
    follow_up = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Nic nie działa"}, "ack")
    assert follow_up["queued_until"] == "2026-11-23T08:00:00+00:00"
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    watcher, _ = await join(node, clients, tokens.agent(unique("w")))
    raised = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "severity": "critical"}, "ticket")
    assert raised["ticket"]["severity"] == "critical" and raised["ticket"]["queued_until"] is None
    assert near(raised["ticket"]["sla_due_at"], "2026-11-22T03:00:00+00:00")  # 16 h on the clock from opening
    await customer.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                          and f["ticket"]["queued_until"] is None)
    await watcher.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                         and f["ticket"]["severity"] == "critical")
    # The customer's next word is not held either.
    now = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Dalej stoi"}, "ack")
    assert now["queued_until"] is None
    await asyncio.gather(run_jobs(node, "2026-11-21T12:01:00+01:00"), run_jobs(node, "2026-11-21T12:01:00+01:00"))
    calls = receiver.wait_for(1)
    critical = [c for c in calls if c.json["event"] == "ticket.critical" and c.json["ticket_id"] == ticket["id"]]
    assert len(critical) == 1
    await run_jobs(node, "2026-11-21T12:10:00+01:00")
    assert len([c for c in receiver.requests if c.json["event"] == "ticket.critical"
                and c.json["ticket_id"] == ticket["id"]]) == 1
    # Its held messages were released with it: Monday has nothing left to release.
    assert (await run_jobs(node, "2026-11-23T09:00:00+01:00"))["done"]["queue.release"] == 0


async def test_sla_warning_and_breach_fire_once_each_and_not_after_an_agent_reacts(clock_with_hook, clients, receiver):
    node, tokens = clock_with_hook("2026-11-18T10:00:00+01:00")  # Wednesday
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    silent, _ = await open_ticket(customer, "major", "Cisza")
    answered, _ = await open_ticket(customer, "major", "Odpowiedziane")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await agent.request({"type": "send", "ticket": answered["id"], "body": "Już działamy"}, "ack")
    # major: warning after 2 working hours, breach after 24 working hours (Fri 18.11 → Mon 23.11 10:00).
    assert near(silent["sla_due_at"], "2026-11-23T09:00:00+00:00")
    mine = {silent["id"], answered["id"]}

    def events() -> list[tuple[str, int]]:
        # The module's database is shared: other tests' tickets escalate too.
        return [(c.json["event"], c.json["ticket_id"]) for c in receiver.requests if c.json["ticket_id"] in mine]

    await run_jobs(node, "2026-11-18T11:59:59+01:00")
    assert events() == []
    await run_jobs(node, "2026-11-18T12:00:00+01:00")
    await run_jobs(node, "2026-11-18T12:30:00+01:00")
    assert events() == [("sla.warning", silent["id"])]
    await run_jobs(node, "2026-11-23T09:59:59+01:00")
    assert events() == [("sla.warning", silent["id"])]
    # (+1 s: the server's clock ran on for a moment after POMOC_CLOCK before the ticket came in)
    await asyncio.gather(run_jobs(node, "2026-11-23T10:00:01+01:00"), run_jobs(node, "2026-11-23T10:00:01+01:00"))
    assert events() == [("sla.warning", silent["id"]), ("sla.breached", silent["id"])]
    await run_jobs(node, "2026-11-24T10:00:00+01:00")
    assert len(events()) == 2


async def test_the_webhook_is_retried_with_backoff_until_it_answers(clock_with_hook, clients, receiver):
    node, tokens = clock_with_hook(SUNDAY_NIGHT)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    await run_jobs(node, "2026-11-22T23:00:00+01:00")  # whatever earlier tests left pending goes first
    receiver.requests.clear()
    receiver.statuses.extend([500, 503])
    ticket, _ = await open_ticket(customer, "critical")
    base = datetime.fromisoformat(ticket["created_at"])  # the server's clock ran on since POMOC_CLOCK

    def at(seconds: float) -> str:
        return (base + timedelta(seconds=seconds)).isoformat()

    await run_jobs(node, at(1))
    await run_jobs(node, at(5))  # before the 10 s backoff: not again
    assert len(receiver.wait_for(1)) == 1
    await run_jobs(node, at(12))
    assert len(receiver.wait_for(2)) == 2
    await run_jobs(node, at(60))
    calls = receiver.wait_for(3)
    assert {c.headers["X-Pomoc-Delivery"] for c in calls} == {calls[0].headers["X-Pomoc-Delivery"]}
    await run_jobs(node, at(1800))
    assert len(receiver.requests) == 3, "delivered once it answered 200, never again"
    assert calls[-1].json["ticket_id"] == ticket["id"]


async def test_changing_the_severity_moves_the_deadline(clock_with_hook, clients):
    node, tokens = clock_with_hook("2026-11-18T10:00:00+01:00")
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "question")
    assert near(ticket["sla_due_at"], "2026-11-27T09:00:00+00:00")  # 7 working days
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    changed = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "severity": "major"}, "ticket")
    assert changed["ticket"]["severity"] == "major"
    assert near(changed["ticket"]["sla_due_at"], "2026-11-23T09:00:00+00:00")


def test_sla_and_calendar_commands(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOC_")}
    env["PYTHONPATH"] = str(ROOT)
    import subprocess

    sla = subprocess.run([sys.executable, "-m", "server", "sla", "--severity", "minor", "--at",
                          "2026-12-23T16:30:00+01:00"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert sla.returncode == 0, sla.stderr
    assert json.loads(sla.stdout)["due_local"] == "do czwartku 31.12, 16:30"
    cal = subprocess.run([sys.executable, "-m", "server", "calendar", "--from", "2026-12-23", "--days", "6"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    lines = cal.stdout.splitlines()
    assert lines[0].startswith("2026-12-23") and "09:00-17:00" in lines[0]
    assert "Wigilia" in lines[1] and "Boże Narodzenie" in lines[2]
    assert "weekend" in lines[4] and "09:00-17:00" in lines[5]  # Sunday 27.12, Monday 28.12
    bad = subprocess.run([sys.executable, "-m", "server", "sla", "--severity", "minor", "--at", "someday"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--at" in bad.stderr


def test_the_calendar_starts_today_in_warsaw_not_in_utc(tmp_path):
    """At 00:30 in Warsaw it is still yesterday in UTC; "today" is Warsaw's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOC_")}
    env.update(PYTHONPATH=str(ROOT), POMOC_CLOCK="2026-11-18T00:30:00+01:00")
    import subprocess

    cal = subprocess.run([sys.executable, "-m", "server", "calendar", "--days", "1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert cal.returncode == 0, cal.stderr
    assert cal.stdout.splitlines() == ["2026-11-18 śr   09:00-17:00"]


def test_a_split_shift_is_refused_at_startup_naming_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOC_")}
    env.update(PYTHONPATH=str(ROOT), POMOC_HOURS="mon-fri 09:00-13:00; mon-fri 14:00-17:00")
    import subprocess

    run = subprocess.run([sys.executable, "-m", "server", "calendar", "--days", "1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "POMOC_HOURS" in run.stderr and "second opening span" in run.stderr
