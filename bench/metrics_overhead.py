"""What the metrics cost the message hot path, in microseconds per message.

In process, no servers: it times exactly what the instrumentation adds, in the shape
it runs in —

- per commit (`server.store.writer`): `Metrics.committed` (two histogram observations);
- per announced batch (`server.chat.announce`): the tally by author kind, one step per
  message in a loop that was there already, and `Metrics.stored` (one increment per
  author kind);
- per message delivered (`server.protocol.session`): one integer increment on the
  session (the scrape adds them up);

and, for scale, what delivering one message to a session costs without any of it
being new (`Session.deliver` of a message event). Batch sizes 1 (SQLite, or an idle
node) to 500 (the writer's largest batch). Prints a table; asserts nothing.

    .venv/bin/python bench/metrics_overhead.py [--rounds 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.metrics import Metrics  # noqa: E402
from server.principal import Principal, Role  # noqa: E402
from server.protocol import views  # noqa: E402
from server.protocol.codec import JSON  # noqa: E402
from server.protocol.events import Event, Source  # noqa: E402
from server.protocol.session import Config, Session  # noqa: E402
from server.rules.records import Author, Message  # noqa: E402


class _Shell:
    def wake(self) -> None:
        pass


def per_call(fn: object, rounds: int) -> float:
    """Seconds per call of `fn()`, best of five runs."""
    call = fn  # type: ignore[assignment]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            call()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    rounds = args.rounds
    metrics = Metrics()
    authors = [Author("customer" if i % 2 else "agent", f"u{i}", "x") for i in range(500)]

    print(f"{'batch':>6} {'per commit µs':>14} {'per batch tally+stored µs':>26} {'per message µs':>15}")
    for size in (1, 10, 100, 500):
        batch = authors[:size]

        def commit(size: int = size) -> None:
            metrics.committed("group", size, 0.002)

        def tally(batch: list[Author] = batch) -> None:
            stored: dict[str, int] = {}
            for author in batch:
                kind = author.kind
                stored[kind] = stored.get(kind, 0) + 1
            metrics.stored(stored)

        scale = max(1, rounds // size)
        commit_s = per_call(commit, scale)
        tally_s = per_call(tally, scale)
        print(f"{size:>6} {commit_s * 1e6:>14.3f} {tally_s * 1e6:>26.3f} {(commit_s + tally_s) / size * 1e6:>15.3f}")

    # One delivered message: the increment alone, and the whole delivery for scale.
    session = Session("n:1", JSON, Config(send_queue_max=10**9), _Shell())
    session.authenticated(Principal(Role.agent, "a1", "Agent"), feed=False)
    session.opened()
    follow = session.follow(1, "s1", 0)

    def increment() -> None:
        session.delivered += 1

    now = datetime(2026, 11, 18, 9, tzinfo=UTC)
    events = [Event("message", views.message(Message(1, seq, seq, authors[1], "treść", now, f"c{seq}")),
                    "other:1") for seq in range(1, rounds + 1)]
    for event in events:
        event.encoded(JSON)  # encoded once per node in production, not per connection
    started = time.perf_counter()
    for event in events:
        session.deliver(Source.SHOP, event)
        if len(session._outbox) > 10_000:
            session.data_to_send()
    deliver_s = (time.perf_counter() - started) / rounds
    assert follow.cursor == rounds and session.delivered == rounds
    increment_s = per_call(increment, rounds)
    print(f"\ndelivery: Session.deliver {deliver_s * 1e6:.3f} µs per message, of which the metrics' increment "
          f"{increment_s * 1e6:.3f} µs ({increment_s / deliver_s:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
