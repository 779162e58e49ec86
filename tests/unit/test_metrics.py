"""The metrics' own rules: a registry per process, bounded labels, views read at scrape
time, the bearer token compared exactly."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import Backlog, Metrics, bounded, token_matches


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_two_processes_worth_of_metrics_never_share_a_counter() -> None:
    one, two = Metrics(), Metrics()
    one.stored({"customer": 3})
    one.committed("group", 3, 0.002)
    assert samples(one)[("pomoc_messages_stored_total", (("author", "customer"),))] == 3
    assert samples(two)[("pomoc_messages_stored_total", (("author", "customer"),))] == 0
    assert samples(one)[("pomoc_commit_seconds_count", (("path", "group"),))] == 1
    assert samples(two)[("pomoc_commit_seconds_count", (("path", "group"),))] == 0


def test_views_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    state = {"customer": 2, "agent": 1, "pending": 4}
    delivered = [10]
    metrics.view(connections=lambda: state, delivered=lambda: delivered[0])
    assert samples(metrics)[("pomoc_connections", (("role", "customer"),))] == 2
    state["customer"] = 0
    delivered[0] = 12
    found = samples(metrics)
    assert found[("pomoc_connections", (("role", "customer"),))] == 0
    assert found[("pomoc_connections", (("role", "pending"),))] == 4
    assert found[("pomoc_messages_delivered_total", ())] == 12


@pytest.mark.parametrize(("value", "allowed", "expected"), [
    ("evalsha", {"evalsha"}, "evalsha"),
    ("EVALSHA".lower(), {"evalsha"}, "evalsha"),
    ("ticket-42", {"evalsha"}, "other"),
    ("", {"evalsha"}, "other"),
])
def test_a_label_outside_its_list_is_other(value: str, allowed: set[str], expected: str) -> None:
    assert bounded(value, allowed) == expected


def test_errors_and_authors_are_bounded_whatever_they_are_called_with() -> None:
    metrics = Metrics()
    for i in range(50):
        metrics.redis_failed(f"command-{i}", f"kind-{i}")
        metrics.database_failed(f"SELECT{i}", "timeout")
        metrics.stored({f"shop-{i}": 1})
    found = samples(metrics)
    redis = {labels for name, labels in found if name == "pomoc_redis_errors_total"}
    assert redis == {(("error", "other"), ("operation", "other"))}
    assert found[("pomoc_redis_errors_total", (("error", "other"), ("operation", "other")))] == 50
    assert {labels for name, labels in found if name == "pomoc_database_errors_total"} == {
        (("error", "timeout"), ("operation", "other"))}
    assert found[("pomoc_messages_stored_total", (("author", "other"),))] == 50


def test_the_backlog_sets_every_channel() -> None:
    metrics = Metrics()
    metrics.backlog(Backlog(outbox=2, notifications={"mail": 5}, queued_tickets=7))
    found = samples(metrics)
    assert found[("pomoc_outbox_backlog", ())] == 2
    assert found[("pomoc_notification_backlog", (("channel", "mail"),))] == 5
    assert found[("pomoc_notification_backlog", (("channel", "sms"),))] == 0
    assert found[("pomoc_queued_tickets", ())] == 7


@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer s3cret-token", True),
    ("bearer s3cret-token", True),
    ("Bearer  s3cret-token ", True),
    (None, False),
    ("", False),
    ("Bearer", False),
    ("Bearer ", False),
    ("Bearer s3cret-tokenx", False),
    ("Bearer s3cret-toke", False),
    ("Basic s3cret-token", False),
    ("s3cret-token", False),
    ("Bearer żółć", False),  # not ASCII: compared as bytes, never an exception
])
def test_the_token_must_match_exactly(header: str | None, ok: bool) -> None:
    assert token_matches(header, "s3cret-token") is ok


async def test_redis_calls_skipped_while_down_are_counted_by_command() -> None:
    import fakeredis

    from server.realtime.clients import GuardedRedis
    from server.realtime.health import RedisDown, RedisHealth

    metrics = Metrics()
    health = RedisHealth(1.0)
    redis = GuardedRedis(connection_pool=fakeredis.FakeAsyncRedis().connection_pool, health=health,
                         errors=metrics.redis_failed)
    try:
        await redis.set("k", "v")  # answered: nothing counted
        health.down("test")
        with pytest.raises(RedisDown):
            await redis.get("k")
        with pytest.raises(RedisDown):
            await redis.pipeline().get("k").execute()
    finally:
        await redis.aclose()
    found = samples(metrics)
    assert found[("pomoc_redis_errors_total", (("error", "skipped"), ("operation", "get")))] == 1
    assert found[("pomoc_redis_errors_total", (("error", "skipped"), ("operation", "pipeline")))] == 1
    assert sum(v for (name, _), v in found.items() if name == "pomoc_redis_errors_total") == 2


async def test_failed_statements_are_counted_by_their_first_word(tmp_path) -> None:
    from sqlalchemy import text

    from server.settings import Settings
    from server.store.db import count_errors, create_engine

    metrics = Metrics()
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"))
    count_errors(engine, metrics.database_failed)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            for statement in ("SELECT * FROM no_such_table", "  insert into no_such_table values (1)"):
                with pytest.raises(Exception, match="no_such_table"):
                    await conn.execute(text(statement))
    finally:
        await engine.dispose()
    found = {labels: v for (name, labels), v in samples(metrics).items() if name == "pomoc_database_errors_total"}
    assert found == {(("error", "other"), ("operation", "select")): 1, (("error", "other"), ("operation", "insert")): 1}


@pytest.mark.parametrize(("raw", "problem"), [("0", "at least 1"), ("70000", "1-65535"), ("nine", "whole number")])
def test_a_bad_worker_metrics_port_names_the_variable(raw: str, problem: str) -> None:
    from server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=f"POMOC_WORKER_METRICS_PORT.*{problem}"):
        Settings.from_env({"POMOC_WORKER_METRICS_PORT": raw})


def test_the_metrics_settings() -> None:
    from server.settings import Settings

    assert Settings.from_env({}).metrics_token is None and Settings.from_env({}).worker_metrics_port is None
    chosen = Settings.from_env({"POMOC_METRICS_TOKEN": " abc ", "POMOC_WORKER_METRICS_PORT": "9101"})
    assert chosen.metrics_token == "abc" and chosen.worker_metrics_port == 9101
