"""Spec rule 6: the checkpoint never names a source transaction whose rows are not all on the target.

Large multi-statement transactions (hundreds of rows over two tables, some big enough to reach the
writer in several parts) run while the daemon is SIGKILLed right before or right after its own
commits. After every kill, every source transaction the checkpoint's applied position covers must
be on the target in full, and after the final run the tables are equal.
"""

from __future__ import annotations

import random
import threading

import pymysql

from conftest import MoveEnv
from support import assert_tables_equal

TABLE = (
    "CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, batch INT NOT NULL, n INT NOT NULL, KEY (batch))"
)


def big_transactions(move: MoveEnv, stop: threading.Event, done: list[tuple[int, int, int]]) -> None:
    """Commit transactions of `size` rows in each of a and b; record (gtid seq, batch, size)."""
    conn = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    try:
        cur = conn.cursor()
        batch = 0
        while not stop.is_set():
            size = 6000 if batch % 7 == 3 else 300  # 12,000 row changes: handed over in parts
            cur.execute("BEGIN")
            for table in ("a", "b"):
                cur.execute(f"INSERT INTO {table} (batch, n) SELECT %s, seq FROM seq_1_to_{size}", (batch,))
            cur.execute("COMMIT")
            cur.execute("SELECT @@last_gtid")
            seq = int(str(cur.fetchone()[0]).rsplit("-", 1)[1])
            done.append((seq, batch, size))
            batch += 1
            stop.wait(0.02)
    finally:
        conn.close()


def applied_seq(move: MoveEnv, state: str | None = None) -> int:
    """Sequence number in the newest checkpoint's applied position (or the first row in ``state``)."""
    where, order = (f"WHERE state='{state}'", "ASC") if state else ("", "DESC")
    rows = move.target.execute(
        f"SELECT applied_gtid FROM `{move.state_database}`._tablemover_checkpoint {where} "
        f"ORDER BY id {order} LIMIT 1"
    )
    position = str(rows[0][0]) if rows else ""
    return int(position.rsplit("-", 1)[1]) if position else 0


def test_checkpoint_never_names_a_partly_applied_transaction(any_move: MoveEnv) -> None:
    move = any_move
    rnd = random.Random(6)
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} (batch, n) SELECT -1, seq FROM seq_1_to_2000")
    # A postponed cutover keeps every killed run alive (copying, then applying while it waits for a
    # release that never comes) until its chosen commit: the kill lands by construction, not by
    # racing the copy to its end. The final run stops before the cutover instead.
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "postpone_cutover": True})
    stop, done = threading.Event(), []
    writer = threading.Thread(target=big_transactions, args=(move, stop, done), daemon=True)
    writer.start()
    kills = checked = 0
    try:
        for _ in range(8):
            point = rnd.choice(["writer.before_commit", "writer.after_commit"])
            run = move.cli(
                "run",
                "-c",
                str(cfg),
                env={"TABLEMOVER_FAULTS": f"{point}:{rnd.randint(6, 30)}"},
            )
            assert run.returncode == -9, (run.returncode, run.stderr[-3000:])
            kills += 1
            covered = applied_seq(move)
            # Transactions before the start position reach the target through the copy, which may
            # not have got to their rows yet; the rule is about the streamed ones.
            start = applied_seq(move, "PREPARED")
            counts = {
                t: dict(move.tgt(f"SELECT batch, COUNT(*) FROM {t} WHERE batch >= 0 GROUP BY batch"))
                for t in ("a", "b")
            }
            for seq, batch, size in list(done):
                if start < seq <= covered:
                    checked += 1
                    for t in ("a", "b"):
                        assert counts[t].get(batch, 0) == size, (
                            f"checkpoint covers GTID seq {covered} but batch {batch} (seq {seq}) has "
                            f"{counts[t].get(batch, 0)} of {size} rows in {t} on the target"
                        )
    finally:
        stop.set()
        writer.join(timeout=60)
    assert kills == 8
    assert checked > 20 and any(size == 6000 for _, _, size in done), (checked, len(done))
    final = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"a": "a", "b": "b"})
