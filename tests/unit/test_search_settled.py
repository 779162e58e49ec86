"""The search indexer's cursor moves only over message ids no transaction can still
commit: an observation (xmax, hi) settles once the oldest running transaction is at
or past its xmax."""

from __future__ import annotations

from server.store.search import Settled


def test_ids_settle_only_when_every_older_transaction_has_ended():
    s = Settled()
    assert s.observe(xmin=10, xmax=12, hi=100) == 0  # transactions 10 and 11 may hold ids up to 100
    assert s.observe(xmin=11, xmax=13, hi=120) == 0  # 11 still runs
    assert s.observe(xmin=12, xmax=14, hi=130) == 100  # 10, 11 ended: up to 100 settled; 12 holds up to 120
    assert s.observe(xmin=14, xmax=14, hi=130) == 130  # nothing runs: everything observed is settled


def test_an_idle_sequence_adds_no_observation_and_the_cursor_never_goes_back():
    s = Settled()
    s.observe(xmin=5, xmax=6, hi=50)
    s.observe(xmin=5, xmax=7, hi=50)  # no new ids: the older observation stands
    assert s.observe(xmin=6, xmax=8, hi=50) == 50
    assert s.observe(xmin=6, xmax=9, hi=40) == 50
