"""The read/apply race (spec rule 3): writes land right inside the copy window, many times."""

from __future__ import annotations

import json
import threading

import pymysql

from conftest import MoveEnv
from support import assert_tables_equal

ROWS = 4_000
CHUNK = 50


def chase(move: MoveEnv, stop: threading.Event, counter: list[int]) -> None:
    """Delete, update and re-insert rows just ahead of the copier's last committed key."""
    src = pymysql.connect(
        unix_socket=move.source.socket, user="root", database=move.database, autocommit=True
    )
    tgt = move.target.admin()
    try:
        scur, tcur = src.cursor(), tgt.cursor()
        last = 0
        while not stop.is_set():
            try:
                tcur.execute(
                    f"SELECT progress FROM `{move.state_database}`._tablemover_checkpoint "
                    "ORDER BY id DESC LIMIT 1"
                )
                row = tcur.fetchone()
                tgt.commit()
            except pymysql.err.ProgrammingError:
                row = None  # the checkpoint table does not exist yet
            if row:
                key = (json.loads(row[0]).get("t", {}).get("last_key") or [0])[0]
                last = max(last, int(key))
            if last >= ROWS:
                break
            lo = last + 1
            # The next chunk's rows: some vanish, some change, some come back with new values.
            scur.execute("DELETE FROM t WHERE id BETWEEN %s AND %s AND id %% 3 = 0", (lo, lo + CHUNK))
            scur.execute(
                "UPDATE t SET v = CONCAT('chased-', id, '-', %s) WHERE id BETWEEN %s AND %s",
                (counter[0], lo, lo + CHUNK),
            )
            scur.execute(
                f"INSERT INTO t (id, v) SELECT seq, CONCAT('back-', seq) FROM seq_{lo}_to_{lo + CHUNK} "
                "WHERE seq % 6 = 0 "
                "ON DUPLICATE KEY UPDATE v = VALUES(v)"
            )
            counter[0] += 1
            # Leave the binlog stream idle between strikes so it applies each strike at once, before
            # the chunk that was read just before the strike reaches the writer.
            stop.wait(0.03)
    finally:
        src.close()
        tgt.close()


def test_no_stale_or_resurrected_rows_when_writes_chase_the_copier(any_move: MoveEnv) -> None:
    move = any_move
    move.src(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64))",
        f"INSERT INTO t SELECT seq, CONCAT('seed-', seq) FROM seq_1_to_{ROWS}",
    )
    cfg = move.config(["t"], move={"chunk_size": CHUNK, "adaptive_chunk_size": False})
    stop, counter = threading.Event(), [0]
    chaser = threading.Thread(target=chase, args=(move, stop, counter), daemon=True)
    chaser.start()
    try:
        # The pause between reading a chunk and queueing it widens the race window: with locking
        # reads the chaser waits for it; with plain reads its commits reach the target first.
        first = move.cli(
            "run", "--stop-before-cutover", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "copy.after_read:0.2"}
        )
        assert first.returncode == 0, first.stderr[-3000:]
    finally:
        stop.set()
        chaser.join(timeout=30)
    assert counter[0] >= 20, f"the chaser only struck {counter[0]} times: the test would prove little"
    second = move.cli(
        "run", "--stop-before-cutover", "-c", str(cfg)
    )  # apply whatever the chaser did after the first run
    assert second.returncode == 0, second.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"t": "t"})
