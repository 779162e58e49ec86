"""The search indexer's cursor moves only over message ids no transaction can still
commit: an observation (hi, writers) settles once none of its writers runs."""

from __future__ import annotations

from server.store.search import Settled


def test_ids_settle_only_when_the_writers_seen_with_them_have_ended():
    s = Settled()
    assert s.observe(100, frozenset({"10", "11"}), running=frozenset({"10", "11"})) == 0
    assert s.observe(120, frozenset({"11", "12"}), running=frozenset({"11", "12", "99"})) == 0
    assert s.observe(130, frozenset({"12"}), running=frozenset({"12", "99"})) == 100  # 10, 11 ended; 99 is no writer
    assert s.observe(130, frozenset(), running=frozenset({"99"})) == 130


def test_an_unknown_writer_keeps_no_observation_and_the_cursor_never_goes_back():
    s = Settled()
    assert s.observe(50, None, running=frozenset()) == 0  # a writer without an xid yet: ask again
    assert s.observe(50, frozenset(), running=frozenset()) == 50
    assert s.observe(40, frozenset(), running=frozenset()) == 50
    assert s.observe(60, frozenset({"7"}), running=frozenset({"7"})) == 50
