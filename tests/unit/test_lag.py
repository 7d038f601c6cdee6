"""The apply-lag arithmetic (tablemover.lag)."""

from __future__ import annotations

from tablemover.gtid import MariaDBPosition
from tablemover.lag import LagTracker


def pos(seq: int) -> MariaDBPosition:
    return MariaDBPosition.parse(f"0-1-{seq}")


def test_lag_is_the_age_of_the_newest_covered_sample_while_behind() -> None:
    t = LagTracker()
    t.sample(0.0, pos(10))
    t.sample(1.0, pos(20))
    t.sample(2.0, pos(30))
    assert t.update(2.5, pos(5)) == 2.5  # nothing covered yet: at least since the first sample
    assert t.update(3.0, pos(20)) == 2.0  # the sample taken at 1.0 is covered, 2.0's is not
    assert t.update(3.5, pos(25)) == 2.5  # still behind: the reading grows with time
    assert t.update(4.0, pos(30)) == 0.0  # every sample covered: caught up


def test_caught_up_needs_a_fresh_covered_sample_and_a_small_lag() -> None:
    t = LagTracker()
    t.sample(0.0, pos(10))
    t.update(0.1, pos(10))
    assert t.caught_up_since(0.0, 1.0)
    assert not t.caught_up_since(0.05, 1.0)  # that sample is older than the question
    t.sample(5.0, pos(11))
    t.update(5.2, pos(10))
    assert not t.caught_up_since(0.0, 1.0)  # 5.2 - 0.0 is over a second behind
    t.update(5.3, pos(11))
    assert t.caught_up_since(5.0, 1.0)
