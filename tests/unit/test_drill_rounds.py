"""The crash drill's round kinds (``drill/rounds/``) without servers: which kind the registry picks
for each round, what each plans after the cutover, and the state rules its checks hold the
checkpoint's transitions to. ``make drill`` and ``tests/drills`` run them against real servers."""

from __future__ import annotations

import random

from drill.checks import transition_problems
from drill.rounds import KINDS, Slot, pick
from drill.rounds.rollback import WINDOW_POINTS

FORWARD = ["PREPARED", "COPYING", "CUTOVER_STARTED", "RENAMED", "DRAINED", "HOOK_FIRED"]


def schedule(rounds: int, window_every: int) -> list[str]:
    """The kinds of rounds 1..``rounds`` as ``drill.run.main`` numbers them."""
    kinds, windows = [], 0
    for number in range(1, rounds + 1):
        window = None
        if window_every and number % window_every == 0:
            windows += 1
            window = windows
        kinds.append(pick(Slot(number, window)).name)
    return kinds


def test_every_kind_has_a_name_of_its_own_and_every_slot_a_kind() -> None:
    assert len({k.name for k in KINDS}) == len(KINDS)
    # Every fourth round copies with four streams (rounds 3, 7, ...), unless it is a window round;
    # every eighth from round 9 (9, 17, ...) watches a target replica; every eighth from round 5
    # (5, 13, ...) reads from a replica of the source; the rest are forward rounds.
    without_windows = schedule(40, 0)
    replica_rounds = [9, 17, 25, 33]
    read_replica_rounds = [5, 13, 21, 29, 37]
    assert [n for n, k in enumerate(without_windows, 1) if k == "replica"] == replica_rounds
    assert [n for n, k in enumerate(without_windows, 1) if k == "read_replica"] == read_replica_rounds
    for n in replica_rounds + read_replica_rounds:
        without_windows[n - 1] = "forward"
    assert without_windows == ["forward", "forward", "parallel", "forward"] * 10
    every_other = schedule(20, 2)
    odd = ["forward", "parallel", "read_replica", "parallel", "replica", "parallel"]
    odd += ["read_replica", "parallel", "replica", "parallel"]
    assert every_other[0::2] == odd  # rounds 1, 3, ..., 19
    # Window rounds: four rollback rounds, then an elapse round.
    assert every_other[1::2] == (["rollback"] * 4 + ["elapse"]) * 2


def test_rollback_rounds_cycle_the_window_points_and_add_a_random_kill_every_other_round() -> None:
    rollback = pick(Slot(2, 1))
    rng = random.Random(1)
    windows = [w for w in range(1, 40) if pick(Slot(2 * w, w)).name == "rollback"]
    plans = [rollback.plan(Slot(2 * w, w), rng) for w in windows]
    assert [p[0].point for p in plans] == [WINDOW_POINTS[i % len(WINDOW_POINTS)] for i in range(len(plans))]
    assert [len(p) for p in plans[:4]] == [1, 2, 1, 2]
    assert all(not k.point and 0 <= k.fraction < 1 for p in plans for k in p[1:])


def test_elapse_and_forward_plans() -> None:
    rng = random.Random(2)
    (kill,) = pick(Slot(10, 5)).plan(Slot(10, 5), rng)
    assert not kill.point and 0 <= kill.fraction < 1
    state = rng.getstate()
    assert pick(Slot(1, None)).plan(Slot(1, None), rng) == []
    assert rng.getstate() == state  # a forward round draws nothing more: the seed's plans stay as they were


def test_parallel_rounds_kill_inside_a_copy_stream_then_in_the_gate_or_at_a_cutover_point() -> None:
    from drill.kills import CUTOVER_POINTS

    kind = pick(Slot(3, None))
    assert kind.move_keys() == {"copy_threads": 4}
    points = [kind.forward_kills(Slot(n, None), 0, random.Random(n)) for n in (3, 7, 11, 15)]
    assert {p[0].point.split(":")[0] for p in points} == {"parallel.after_commit", "parallel.before_commit"}
    assert all(1 <= int(p[0].point.split(":")[1]) <= 12 for p in points)
    seconds = [p[1].point for p in points]
    assert all(s in CUTOVER_POINTS or s.startswith("gate.after_chunk:") for s in seconds), seconds
    kinds = {
        p[1].point.split(":")[0]
        for n in range(3, 80, 4)
        for p in [kind.forward_kills(Slot(n, None), 0, random.Random(n))]
    }
    assert "gate.after_chunk" in kinds and kinds & set(CUTOVER_POINTS), kinds


def test_each_kind_holds_the_transitions_to_its_own_ending() -> None:
    forward, rollback, elapse = (pick(s).rules for s in (Slot(1, None), Slot(2, 1), Slot(10, 5)))
    done = [*FORWARD, "DONE"]
    elapsed = [*FORWARD, "WINDOW_OPEN", "DONE"]
    rolled = [
        *FORWARD,
        "WINDOW_OPEN",
        "ROLLBACK_STARTED",
        "ROLLBACK_RENAMED",
        "ROLLBACK_DRAINED",
        "ROLLED_BACK",
    ]
    assert transition_problems(done, forward) == []
    assert transition_problems(elapsed, elapse) == []
    assert transition_problems(rolled, rollback) == []
    assert "WINDOW_OPEN written in a round that must not reach it" in transition_problems(elapsed, forward)
    assert transition_problems(rolled, elapse)[0].startswith(
        "does not end with HOOK_FIRED, WINDOW_OPEN, DONE"
    )
    # A resumed cutover (CUTOVER_STARTED back to COPYING) is legal; RENAMED written twice is not.
    resumed = [*FORWARD[:3], "COPYING", *FORWARD[2:], "DONE"]
    assert transition_problems(resumed, forward) == []
    twice = [*FORWARD[:4], "RENAMED", *FORWARD[4:], "DONE"]
    assert "illegal transition RENAMED -> RENAMED" in transition_problems(twice, forward)
    assert "RENAMED written 2 times" in transition_problems(twice, forward)


def test_replica_rounds_kill_while_throttled_and_in_the_cutover_wait_and_keep_the_seeds_plans() -> None:
    from drill.kills import plan_kills

    kind = pick(Slot(9, None))
    assert kind.name == "replica" and kind.label == "replica"
    assert pick(Slot(1, None)).name == "forward"  # round 1 times an undisturbed run: not a replica round
    assert pick(Slot(18, 9)).name != "replica"  # window rounds keep their kinds
    mine, theirs = random.Random(5), random.Random(5)
    kills = kind.forward_kills(Slot(9, None), 4, mine)
    assert [k.point for k in kills] == ["replica.throttled", "replica.cutover_wait"]
    plan_kills(9, 4, theirs)
    # It draws what a forward round would have drawn, so the rounds after it keep their plans.
    assert mine.getstate() == theirs.getstate()
    assert kind.plan(Slot(9, None), mine) == []
    assert mine.getstate() == theirs.getstate()
