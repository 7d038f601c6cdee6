"""Crash drills for the cutover: SIGKILL in every cutover state and at the two critical instants
(between the RENAME and its checkpoint, and inside the on-success hook), then restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, renames_in_binlog, transitions, write_hook

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
RENAMED = {"_a_moved": "a", "_b_moved": "b"}


def setup_move(move: MoveEnv, hook_body: str = "") -> tuple[Path, Path]:
    for t in ("a", "b"):
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_3000",
        )
    hooks, log = move.workdir / "hooks", move.workdir / "hooks.log"
    write_hook(hooks, "on-success", f'echo "success $TABLEMOVER_HOOK_ATTEMPT" >> {log}\n{hook_body}')
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "hooks_dir": str(hooks)})
    return cfg, log


def hook_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


POINTS = [
    "state.CUTOVER_STARTED",  # intent written, nothing renamed yet
    "cutover.after_rename",  # RENAME committed, RENAMED checkpoint not written
    "state.RENAMED",
    "state.DRAINED",
    "hook.before_success",  # attempt 1 recorded, hook not started
    "state.HOOK_FIRED",
]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_in_cutover_then_restart_completes(move: MoveEnv, point: str) -> None:
    cfg, log = setup_move(move)
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=3000, pause_s=0.002).start()
    try:
        first = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": point})
    finally:
        load.stop()
    assert first.returncode == -9, first.stderr[-2000:]
    lines_before = hook_lines(log)
    second = move.cli("run", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]

    assert transitions(move)[-1] == "DONE"
    assert transitions(move).count("RENAMED") == 1
    assert renames_in_binlog(move) == 1, "the source tables were renamed more than once"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, RENAMED)
    lines = hook_lines(log)
    assert lines, "on-success never ran"
    if point == "state.HOOK_FIRED":
        assert lines == lines_before == ["success 1"], "on-success ran again after HOOK_FIRED was written"
    elif point == "hook.before_success":
        assert lines == ["success 2"], lines  # attempt 1 was recorded before the kill
    else:
        assert lines == ["success 1"], lines


def test_sigkill_inside_the_success_hook_reruns_it_with_a_higher_attempt(move: MoveEnv) -> None:
    # The hook kills the daemon (its parent) the first time, as a host crash mid-hook would.
    cfg, log = setup_move(move, 'if [ "$TABLEMOVER_HOOK_ATTEMPT" = 1 ]; then kill -9 $PPID; sleep 5; fi\n')
    first = move.cli("run", "-c", str(cfg))
    assert first.returncode == -9, first.stderr[-2000:]
    second = move.cli("run", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    assert hook_lines(log) == ["success 1", "success 2"]
    assert transitions(move)[-2:] == ["HOOK_FIRED", "DONE"]
    assert renames_in_binlog(move) == 1
    assert_tables_equal(move.source, move.database, move.target, move.target_database, RENAMED)


def test_recreated_original_table_in_cutover_started_refuses_with_exit_3(move: MoveEnv) -> None:
    cfg, _log = setup_move(move)
    first = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "cutover.after_rename"})
    assert first.returncode == -9
    # An operator "helpfully" recreates a table under the original name after the rename.
    move.src("CREATE TABLE a (id INT PRIMARY KEY)")
    before = (move.src("SHOW TABLES"), move.source.execute("SELECT @@gtid_binlog_pos"), transitions(move))
    second = move.cli("run", "-c", str(cfg))
    assert second.returncode == 3, second.stderr[-2000:]
    assert "neither the before nor the after state" in second.stderr
    assert (
        f"{move.database}.a exists" in second.stderr and f"{move.database}._a_moved exists" in second.stderr
    )
    assert "Traceback" not in second.stderr
    after = (move.src("SHOW TABLES"), move.source.execute("SELECT @@gtid_binlog_pos"), transitions(move))
    assert after == before, "an exit-3 refusal changed something"
