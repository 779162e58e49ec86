"""This process's metrics: one Prometheus registry and the instruments in it.

A `Metrics` is built once per process by its wiring (`server.chat.runtime.running`)
and handed to whatever records something, so two apps in one process (the tests)
never share a counter; nothing here is a module-level global. The instruments are
`prometheus_client`'s, whose own per-metric locks are the only ones taken.

What costs nothing on the message hot path is read when Prometheus scrapes instead
of being counted as it happens: the open connections by role and the messages
handed to sockets are *views*, functions the wiring registers (`view`) and the
collector calls at scrape time. What is counted as it happens is counted per batch
(messages stored: one increment per author kind and commit) or per event that is
rare next to a message (a commit, a hello, an error).

Labels are bounded by construction: roles, paths, outcomes, operation kinds, job
names and channels from fixed lists; never a ticket, shop or user id. Kernel
module: the standard library and `prometheus_client` only.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

# The classic text format (every Prometheus reads it; the names here need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("customer", "agent")
# Which label values an operation may have (anything else is counted as "other"):
# Redis commands Pomoc sends, and the first word of a SQL statement.
REDIS_OPERATIONS = frozenset({
    "evalsha", "eval", "script", "get", "set", "mget", "mset", "del", "exists", "expire", "pexpire", "incr",
    "incrby", "hget", "hset", "hdel", "hgetall", "hincrby", "sadd", "srem", "smembers", "scard", "zadd", "zrem",
    "zrange", "zrangebyscore", "zremrangebyscore", "zcard", "publish", "subscribe", "unsubscribe", "ping",
    "time", "scan", "pipeline",
})
SQL_OPERATIONS = frozenset({"select", "insert", "update", "delete", "with", "begin", "commit", "rollback",
                            "connect", "group_commit"})
ERROR_KINDS = ("timeout", "connection", "refused", "skipped", "other")

# Commit batch sizes (messages) and latencies (seconds): one message at rest, up to
# the writer's max batch of 500 under load; a local commit takes a millisecond or two.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HELLO_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


def bounded(value: str, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else "other" (a label never grows unbounded)."""
    return value if value in allowed else "other"


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work waiting in the database, as counted at one instant."""

    outbox: int  # escalations not yet delivered to the webhook
    notifications: Mapping[str, int]  # mail and SMS not yet finished, by channel
    queued_tickets: int  # tickets waiting in the off-hours queue


# What the wiring registers for the scrape: open connections by role (and "pending"
# for those that have not said hello), messages handed to sockets so far.
ConnectionsView = Callable[[], Mapping[str, int]]
DeliveredView = Callable[[], int]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._connections: ConnectionsView | None = None
        self._delivered: DeliveredView | None = None
        self.messages_stored = Counter(
            "pomoc_messages_stored", "Messages committed by this node (sends, opened tickets, system messages)",
            ["author"], registry=r)
        self.messages_replayed = Counter(
            "pomoc_messages_replayed", "Missed messages sent to resuming connections after their welcome",
            registry=r)
        self.commit_batch = Histogram(
            "pomoc_commit_batch_messages", "Messages per commit (group: PostgreSQL's group commit; "
            "single: one send per transaction, SQLite and sends with files)", ["path"], buckets=BATCH_BUCKETS,
            registry=r)
        self.commit_seconds = Histogram(
            "pomoc_commit_seconds", "Time from a commit's start to its COMMIT answered", ["path"],
            buckets=COMMIT_BUCKETS, registry=r)
        self.hello_seconds = Histogram(
            "pomoc_hello_seconds", "Time from a hello read to its welcome (and replay) queued for the socket",
            ["role", "outcome"], buckets=HELLO_BUCKETS, registry=r)
        self.redis_errors = Counter(
            "pomoc_redis_errors", "Redis calls that failed, by command and kind "
            "(skipped: not tried while Redis was known to be down)", ["operation", "error"], registry=r)
        self.database_errors = Counter(
            "pomoc_database_errors", "Database statements that failed, by statement kind and error kind",
            ["operation", "error"], registry=r)
        self.outbox_backlog = Gauge(
            "pomoc_outbox_backlog", "Escalations waiting for delivery to the webhook (read at scrape)", registry=r)
        self.notification_backlog = Gauge(
            "pomoc_notification_backlog", "Mail and SMS waiting for delivery, by channel (read at scrape)",
            ["channel"], registry=r)
        self.queued_tickets = Gauge(
            "pomoc_queued_tickets", "Tickets waiting in the off-hours queue now (read at scrape)", registry=r)
        self.backlog_errors = Counter(
            "pomoc_backlog_read_errors", "Scrapes that could not read the backlog from the database", registry=r)
        # The jobs (the worker, or the web process in embedded mode).
        self.job_seconds = Histogram(
            "pomoc_job_seconds", "Duration of one run of a background job", ["job"], buckets=JOB_BUCKETS,
            registry=r)
        self.job_failures = Counter("pomoc_job_failures", "Job runs that failed", ["job"], registry=r)
        self.mails = Counter("pomoc_mails", "Mails handed to the transport, by outcome (sent, failed)",
                             ["outcome"], registry=r)
        self.sms = Counter("pomoc_sms", "SMS handed to the gateway, by outcome (sent, failed, rejected)",
                           ["outcome"], registry=r)
        self.webhooks = Counter("pomoc_webhook_deliveries", "Escalation webhook POSTs, by outcome (sent, failed)",
                                ["outcome"], registry=r)
        # The hot path's children bound once: `labels()` takes a lock and builds a key each call.
        self._stored = {author: self.messages_stored.labels(author) for author in (*ROLES, "system")}
        self._commits = {path: (self.commit_batch.labels(path), self.commit_seconds.labels(path))
                         for path in ("group", "single")}
        r.register(_Views(self))

    # ------------------------------------------------------------ the wiring
    def view(self, *, connections: ConnectionsView | None = None, delivered: DeliveredView | None = None) -> None:
        """Register what the scrape reads from the running process."""
        if connections is not None:
            self._connections = connections
        if delivered is not None:
            self._delivered = delivered

    # ------------------------------------------------------------- recording
    def stored(self, by_author: Mapping[str, int]) -> None:
        for author, count in by_author.items():
            child = self._stored.get(author)
            if child is None:
                child = self.messages_stored.labels("other")
            child.inc(count)

    def committed(self, path: str, messages: int, seconds: float) -> None:
        """One commit of `messages` sends on `path` ("group" or "single")."""
        batch, latency = self._commits[path]
        batch.observe(messages)
        latency.observe(seconds)

    def redis_failed(self, operation: str, error: str) -> None:
        self.redis_errors.labels(bounded(operation.lower(), REDIS_OPERATIONS), bounded(error, ERROR_KINDS)).inc()

    def database_failed(self, operation: str, error: str) -> None:
        self.database_errors.labels(bounded(operation.lower(), SQL_OPERATIONS), bounded(error, ERROR_KINDS)).inc()

    def backlog(self, found: Backlog) -> None:
        self.outbox_backlog.set(found.outbox)
        for channel in ("mail", "sms"):
            self.notification_backlog.labels(channel).set(found.notifications.get(channel, 0))
        self.queued_tickets.set(found.queued_tickets)

    # ------------------------------------------------------------- exposition
    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _Views(Collector):
    """What is read, not counted: called by the registry at every scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: its families are known only at collect time

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily("pomoc_connections", "Open WebSocket connections on this node, by role "
                                        "(pending: not identified by a hello yet)", labels=["role"])
        counts = self._metrics._connections() if self._metrics._connections is not None else {}
        for role in (*ROLES, "pending"):
            connections.add_metric([role], counts.get(role, 0))
        yield connections
        delivered = self._metrics._delivered() if self._metrics._delivered is not None else 0
        yield CounterMetricFamily("pomoc_messages_delivered", "Messages handed to this node's connections "
                                  "as they were committed or filled from the database (replays: "
                                  "pomoc_messages_replayed)", value=delivered)


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>`, compared in constant time."""
    if header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
