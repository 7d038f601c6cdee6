"""Issue #24's acceptance for the crash drill: rounds whose move reads from a replica of the source.

Two read-replica rounds (``--only-kind read_replica``), killed as forward rounds are (round 1 at
``state.CUTOVER_STARTED``, round 2 at a random instant), with a GTID replica of the source as
``[replica]``. In round 1 the drill also stops the replica's SQL thread mid-copy: the daemon must
say it waits for the replica before the drill lets it apply again. Each must pass a forward round's
checks (verify, the ordered dump diff, pt-table-sync where installed, one RENAME, the state graph,
the hook once), the move user must have read no row on the primary and every table's rows on the
replica, and ``tablemover status`` must never have said it reads from anywhere else (round 1's, asked
while it waits, says the replica). A round whose move reads from the primary fails those checks.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from drill.common import Children, Drill
from drill.read_replica import ReadReplica, stop_read_replica
from drill.rounds.base import Round, Slot, run_round
from drill.rounds.read_replica import WAIT_LINES, ReadReplicaRound

from support import run_drill
from tablemover.local.mariadb import grant_mover, start_pair


def test_read_replica_rounds_pass_with_kills_and_a_stopped_sql_thread(tmp_path: Path) -> None:
    result, report = run_drill(
        tmp_path / "drill.json",
        "--rounds",
        "2",
        "--only-kind",
        "read_replica",
        "--rows",
        "5000",
        "--seed",
        "24",
    )
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    assert report["only_kind"] == "read_replica"
    rounds = report["rounds"]
    assert [r["result"] for r in rounds] == ["PASS"] * 2, rounds
    for record in rounds:
        assert record["window"] == "read-replica", record
        assert record["read_from_replica"] is True, record
        # What `tablemover status` said while the runs worked (a short run may answer none).
        seen = record["reading_from"]
        assert all(v.startswith("replica 127.0.0.1:") for v in seen), seen
        reads = record["mover_rows_read"]
        assert reads["primary"] == 0 and reads["replica"] >= 5000 * len(record["tables"]), reads
        assert record["renames"] == 1 and record["hook_attempts"] == [1], record
        assert record["transitions"][-2:] == ["HOOK_FIRED", "DONE"], record
    first, second = rounds
    # Round 1: killed in a cutover state (the first targeted point), restarted to the end ...
    assert first["kill_points"] == "state.CUTOVER_STARTED", first
    assert first["restarts"] >= 1 and first["kills"][0]["happened"], first
    # ... and held by the stopped SQL thread mid-copy, which the daemon said it waits for.
    stop = first["replica_sql_stop"]
    assert stop["planned"] is True and "missed" not in stop, stop
    assert stop["said"]["msg"] in WAIT_LINES, stop
    assert stop["held_s"] >= 1.0, stop
    # The status asked while it waited (the run killed only later, at the cutover) said so.
    assert first["reading_from"], first
    if "status_waiting_for" in stop:
        assert stop["status_waiting_for"].startswith("read replica 127.0.0.1:"), stop
    assert second["replica_sql_stop"] == {"planned": False}, second


class PrimaryReader(ReadReplicaRound):
    """A read-replica round whose config has no ``[replica]``: its move reads from the primary, as
    a daemon that silently ignored the replica would."""

    def replica_section(self, rnd: Round, replica: ReadReplica) -> dict[str, Any]:
        return {}


def test_a_move_that_reads_from_the_primary_fails_the_round(tmp_path: Path) -> None:
    pair = start_pair(root=tmp_path / "servers")
    children = Children()
    drill: Drill | None = None
    try:
        grant_mover(pair, "drill\\_%")
        workdir = tmp_path / "work"
        workdir.mkdir()
        drill = Drill(pair, workdir, children, 2000, 500, 1, None, None)  # the Python load
        kind = PrimaryReader()
        kills = kind.forward_kills(Slot(5, None), 0, random.Random(1))
        kind.stop_sql[5] = False  # nothing would wait for the replica
        record = run_round(drill, kind, 5, kills, [], 2)
    finally:
        children.stop_all()
        if drill is not None:
            stop_read_replica(drill)
        pair.cleanup()
    assert record["result"] == "FAIL", record
    assert record["read_from_replica"] is False, record
    # The move itself passed every check; only where it read fails the round.
    failures = record["failures"]
    assert failures, record
    assert all(
        f.startswith(("status said the move reads from source ", "the move user read ")) for f in failures
    ), failures
    assert any("rows on the primary" in f for f in failures), failures
    assert record["mover_rows_read"]["primary"] >= 2000, record
