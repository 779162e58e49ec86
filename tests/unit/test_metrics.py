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
