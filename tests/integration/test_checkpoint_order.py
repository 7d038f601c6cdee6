"""The checkpoint's order on a real server: the newest row is the highest seq its writer chose (not
the AUTO_INCREMENT id), a stale writer's row is refused (compare-and-set), and a move started
under the earlier layout (no seq column, the table in the target schema) resumes and finishes
after the upgrade, where its rows are."""

from __future__ import annotations

import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal
from tablemover import checkpoint as cpstore
from tablemover.config import load_config
from tablemover.db import close, connect
from tablemover.errors import MoveTakenOver

# The checkpoint table as versions before the seq column created it.
EARLIER_LAYOUT = """CREATE TABLE _tablemover_checkpoint (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  move_name VARCHAR(64) NOT NULL,
  state VARCHAR(32) NOT NULL,
  kind VARCHAR(16) NOT NULL,
  applied_gtid TEXT NOT NULL,
  drain_gtid TEXT NULL,
  progress JSON NOT NULL,
  rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  events_applied BIGINT UNSIGNED NOT NULL DEFAULT 0,
  hook_attempts INT UNSIGNED NOT NULL DEFAULT 0,
  detail JSON NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  writer VARCHAR(255) NOT NULL,
  KEY move_id (move_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

OLD_ROW = (
    "INSERT INTO _tablemover_checkpoint (id, move_name, state, kind, applied_gtid, progress, writer) "
    "VALUES ({id}, 'm', '{state}', 'transition', '0-1-{id}', '{{}}', 'old')"
)


async def test_newest_by_seq_compare_and_set_and_the_upgrade(move: MoveEnv) -> None:
    move.target.execute(f"CREATE DATABASE IF NOT EXISTS `{move.target_database}`")
    move.tgt(EARLIER_LAYOUT, OLD_ROW.format(id=7, state="PREPARED"), OLD_ROW.format(id=9, state="COPYING"))
    config = load_config(str(move.config(["a"])))
    db = move.target_database
    conn = await connect(config.target, "target")
    try:
        # The earlier layout is read as it is (newest id), without the owner's ALTER.
        old = await cpstore.latest(conn, db, "m")
        assert old is not None and (old.state.value, old.seq, old.id) == ("COPYING", 0, 9)
        # The target user holds ALTER (the AUTO_INCREMENT carry-over needs it): the owner upgrades.
        assert await cpstore.upgrade_table(conn, db)
        assert not await cpstore.upgrade_table(conn, db)  # nothing left to do
        assert [c.id for c in await cpstore.history(conn, db, "m")] == [7, 9]
        # The first row after the upgrade continues the old newest one, and is the newest now.
        first = await cpstore.write(conn, db, old.evolve(applied_gtid="0-1-10"))
        assert first.seq == 1
        newest = await cpstore.latest(conn, db, "m")
        assert newest is not None and (newest.seq, newest.applied_gtid) == (1, "0-1-10")
        # Order by seq, not id: a row handed a lower id (an insert that started earlier and
        # committed later, say) but written as the successor is the newest.
        move.tgt(
            "INSERT INTO _tablemover_checkpoint (id, seq, move_name, state, kind, applied_gtid, progress, "
            "writer) VALUES (3, 2, 'm', 'COPYING', 'progress', '0-1-11', '{}', 'w')"
        )
        newest = await cpstore.latest(conn, db, "m")
        assert newest is not None and (newest.seq, newest.id, newest.applied_gtid) == (2, 3, "0-1-11")
        assert [c.seq for c in await cpstore.history(conn, db, "m")] == [0, 0, 1, 2]
        # A writer that continues a stale row (seq 1, while 2 exists) is refused; nothing stored.
        with pytest.raises(MoveTakenOver, match="another daemon wrote checkpoint row 2"):
            await cpstore.write(conn, db, first.evolve(applied_gtid="0-1-99"))
        assert move.tgt("SELECT COUNT(*) FROM _tablemover_checkpoint WHERE applied_gtid = '0-1-99'") == [(0,)]
        # Pruning keeps the newest row (and transitions), and drops old-layout progress rows too.
        third = await cpstore.write(conn, db, newest)
        await cpstore.prune_progress(conn, db, "m", third.seq)
        # (seq 2, a progress row, goes; seq 1 is the transition the first write continued.)
        assert [(c.seq, c.kind) for c in await cpstore.history(conn, db, "m")] == [
            (0, "transition"),
            (0, "transition"),
            (1, "transition"),
            (3, "progress"),
        ]
    finally:
        await close(conn)


def test_a_move_started_under_the_earlier_layout_resumes_and_finishes(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))",
        "INSERT INTO a SELECT seq, seq % 97, 'seed' FROM seq_1_to_3000",
    )
    cfg = move.config(["a"])
    first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    # Make the table what an earlier version left: in the target schema beside the moved tables,
    # no seq column, its rows ordered by id only.
    columns = "id, move_name, state, kind, applied_gtid, drain_gtid, progress, rows_copied, "
    columns += "events_applied, hook_attempts, detail, created_at, writer"
    move.tgt(
        EARLIER_LAYOUT,
        f"INSERT INTO _tablemover_checkpoint ({columns}) SELECT {columns} FROM {move.checkpoint_table}",
        f"DROP TABLE {move.checkpoint_table}",
    )
    status = move.cli("status", "--json", "-c", str(cfg))
    assert status.returncode == 0 and '"COPYING"' in status.stdout, status.stdout + status.stderr
    # The next daemon adds the column itself (its user holds ALTER on the target) and resumes.
    load = WriteLoad(move.source, move.database, ["a"], key_space=3000, pause_s=0.002).start()
    try:
        move.src("INSERT INTO a VALUES (5001, 1, 'after the upgrade')")
        run = move.cli("run", "-c", str(cfg))
    finally:
        load.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    newest = move.tgt(
        "SELECT state FROM _tablemover_checkpoint WHERE kind='transition' ORDER BY seq DESC LIMIT 1"
    )
    assert newest == [("DONE",)], newest
    seqs = move.tgt("SELECT MIN(seq), COUNT(*) FROM _tablemover_checkpoint WHERE seq IS NOT NULL")
    assert seqs[0][0] == 1 and seqs[0][1] >= 4, seqs  # continued from the old rows at 1
    # The move finished where its rows were: nothing of it in the state schema.
    in_state_schema = f"SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{move.state_database}'"
    assert not move.tgt(in_state_schema)
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
