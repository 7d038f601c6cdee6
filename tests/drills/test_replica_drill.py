"""Issue #27's acceptance for the crash drill: rounds with a GTID replica of the target watched.

Two replica rounds (``--only-kind replica``). Each SIGKILLs the daemon while the copy is held by
the replica (its SQL thread stopped, the daemon's "copy throttled" line naming it) and again while
the cutover waits in DRAINED for the replica to hold the drained rows; the restart after that must
wait for it again before on-success. Each must pass a forward round's checks (verify, the ordered
dump diff, pt-table-sync where installed, one RENAME, the state graph, the hook once) and end with
the replica identical to the target (its position covers the target's, the moved tables' rows the
same on both). A replica that differs from the target fails the round."""

from __future__ import annotations

import random
from pathlib import Path

from drill.common import Children, Drill
from drill.daemon import Daemon
from drill.rounds.base import Round, Slot, run_round
from drill.rounds.replica import ReplicaRound

from support import run_drill
from tablemover.local.mariadb import grant_mover, start_pair


def test_replica_rounds_resume_after_kills_while_throttled_and_in_the_cutover_wait(tmp_path: Path) -> None:
    result, report = run_drill(
        tmp_path / "drill.json", "--rounds", "2", "--only-kind", "replica", "--seed", "27", timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    assert report["only_kind"] == "replica"
    rounds = report["rounds"]
    assert [r["result"] for r in rounds] == ["PASS"] * 2, rounds
    for record in rounds:
        assert record["window"] == "replica", record
        assert record["replica_identical"] is True, record
        assert [k["happened"] for k in record["kills"]] == [True, True], record["kill_points"]
        runs = record["runs"]
        # Killed in the copy, killed in DRAINED (the wait), then a run that resumes there.
        assert [r["rc"] for r in runs] == [-9, -9, 0], runs
        assert "CUTOVER_STARTED" not in runs[0]["states"], runs[0]
        assert runs[1]["states"][-1] == "DRAINED", runs[1]
        assert runs[2]["states"] == ["HOOK_FIRED", "DONE"], runs[2]
        assert record["hook_attempts"] == [1], record


class TamperedReplica(ReplicaRound):
    """A replica round whose replica gets a row of its own once the move is over (``sql_log_bin =
    0``: the target never hears of it), as a replica that silently diverged would have."""

    def after_runs(self, rnd: Round, live: Daemon | None) -> None:
        replica = rnd.drill.replica
        assert replica is not None
        assert replica.catch_up(rnd.drill.pair.target) == ""
        replica.server.execute(
            "SET SESSION sql_log_bin = 0", f"UPDATE `{rnd.dst}`.`sbtest1` SET k = k + 1 WHERE id = 1"
        )


def test_a_replica_that_differs_from_the_target_fails_the_round(tmp_path: Path) -> None:
    pair = start_pair(root=tmp_path / "servers")
    children = Children()
    drill: Drill | None = None
    try:
        grant_mover(pair, "drill\\_%")
        workdir = tmp_path / "work"
        workdir.mkdir()
        drill = Drill(pair, workdir, children, 2000, 500, 1, None, None)  # the Python load
        kind = TamperedReplica()
        kills = kind.forward_kills(Slot(9, None), 0, random.Random(1))
        record = run_round(drill, kind, 9, kills, [], 2)
    finally:
        children.stop_all()
        if drill is not None and drill.replica is not None:
            drill.replica.stop()
        pair.cleanup()
    assert record["result"] == "FAIL", record
    assert record["replica_identical"] is False
    # The replica's difference is the round's only failure: the move itself passed every check.
    (failure,) = record["failures"]
    assert failure.startswith("the replica's drill_9_dst.sbtest1 ("), failure
    assert failure.endswith(" on the replica) differs from the target's"), failure
