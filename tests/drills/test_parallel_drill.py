"""Issue #23's acceptance for the crash drill: rounds of the drill itself with four copy streams.

Three rounds with ``--copy-threads 4`` (every round's move copies with four streams): rounds 1 and 2
are forward rounds killed at a writer commit or a cutover state or at a random instant; round 3 is
a parallel round, SIGKILLed at a stream's n-th chunk commit (by construction: the copy commits
more chunks than that) and, on the restart, at the trailing gate's n-th compared chunk. Each must
end with the drill's checks passing: verify, the ordered dump diff, pt-table-sync where installed,
one RENAME in the binlog, the state graph and the hook."""

from __future__ import annotations

from pathlib import Path

from support import run_drill


def test_drill_rounds_with_four_copy_streams(tmp_path: Path) -> None:
    result, report = run_drill(
        tmp_path / "drill.json", "--rounds", "3", "--window-every", "0", "--copy-threads", "4", "--seed", "21"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert report["copy_threads"] == 4
    rounds = report["rounds"]
    assert [r["result"] for r in rounds] == ["PASS"] * 3, rounds
    parallel = rounds[2]
    assert parallel["window"] == "copy4", parallel
    # Seed 21 plans round 3's kills in a copy stream, then inside the gate that trails the copy.
    assert parallel["kill_points"].startswith("parallel."), parallel
    assert "+ gate.after_chunk:" in parallel["kill_points"], parallel
    assert "not reached" not in parallel["kill_points"], parallel  # both kills landed
    assert parallel["restarts"] >= 2, parallel
