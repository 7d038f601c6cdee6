"""The checksum before the cutover: exact under live writes, and it stops a move that diverged."""

from __future__ import annotations

import json
import threading
import time

import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, renames_in_binlog, transitions, wait_for_log

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"


def seed(move: MoveEnv, rows: int = 5000) -> None:
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'seed' FROM seq_1_to_{rows}")


def log_events(move: MoveEnv, msg: str) -> list[dict[str, object]]:
    out = []
    for line in (move.workdir / "daemon.log").read_text().splitlines():
        if line.startswith("{") and f'"msg": "{msg}' in line:
            out.append(json.loads(line))
    return out


def test_gate_passes_under_live_writes_and_reports_its_cost(move: MoveEnv) -> None:
    seed(move)
    cfg = move.config(["a", "b"], move={"chunk_size": 500})
    # A steady write load on both tables: every chunk is written while it is checksummed.
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.001).start()
    try:
        proc = move.popen("run", "-c", str(cfg))
        assert proc.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    finally:
        load.stop()
    equal = log_events(move, "checksum before cutover: source and target equal")
    assert len(equal) == 1 and int(equal[0]["rows"]) >= 2 * 4000, equal  # type: ignore[call-overload]
    assert float(equal[0]["seconds_per_million_rows"]) > 0  # type: ignore[arg-type]
    assert not log_events(move, "checksum before cutover found differences")
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


def test_gate_catches_a_row_planted_on_the_target_and_renames_nothing(move: MoveEnv) -> None:
    seed(move, 2000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", proc)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    # Something other than the move writes to the target: the gate must refuse to cut over.
    move.tgt("INSERT INTO b VALUES (900001, 1, 'planted')", "UPDATE a SET v = 'changed' WHERE id = 17")
    cfg = move.config(["a", "b"])
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 3, run.stderr[-3000:]
    assert "checksum before the cutover found rows that differ" in run.stderr
    assert "900001" in run.stderr and "17" in run.stderr
    assert renames_in_binlog(move, "a") == 0 and renames_in_binlog(move, "b") == 0
    assert sorted(r[0] for r in move.src("SHOW TABLES")) == ["a", "b"]
    assert transitions(move)[-1] == "COPYING", "nothing past COPYING: no intent was written"


class Appender:
    """Appends rows past the source's highest id (into the last, open-ended verify chunk), in a thread."""

    def __init__(self, move: MoveEnv, table: str, start: int) -> None:
        self.move, self.table, self.next_id = move, table, start
        self.done = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Appender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        conn = pymysql.connect(
            unix_socket=self.move.source.socket, user="root", database=self.move.database, autocommit=True
        )
        try:
            with conn.cursor() as cur:
                while not self.done.is_set():
                    try:
                        cur.execute(f"INSERT INTO {self.table} VALUES (%s, 1, 'appended')", (self.next_id,))
                        self.next_id += 1
                    except pymysql.err.MySQLError as exc:
                        if exc.args and exc.args[0] == 1146:  # renamed away by the cutover
                            return
                        if exc.args and exc.args[0] not in (1205, 1213):
                            self.errors.append(str(exc))
                    time.sleep(0.005)
        finally:
            conn.close()


@pytest.mark.parametrize("trailing", [False, True], ids=["at_cutover", "trailing_copy"])
def test_gate_is_exact_on_a_read_committed_source_with_appends_into_the_last_chunk(
    move: MoveEnv, trailing: bool
) -> None:
    # At READ COMMITTED a locking read takes no gap locks: an append into the last chunk commits
    # between the source's sum and the position read after it (widened here to 0.3 s), and the
    # target, caught up to that position, holds one row more: a false difference, exit 3. The
    # gate sets REPEATABLE READ on its own connections, whatever the server default. Both ways: the
    # whole gate at the cutover, and the gate trailing the copy (its last interval, after each
    # table's last copied key, is where the appends go).
    seed(move, 3000)
    cfg = move.config(["a", "b"], move={"chunk_size": 500, "checksum_during_copy": trailing})
    default = move.source.execute("SELECT @@GLOBAL.tx_isolation")[0][0]
    move.source.execute("SET GLOBAL tx_isolation = 'READ-COMMITTED'")
    try:
        with Appender(move, "a", 100_001) as appends:
            proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "verify.after_source_sum:0.3"})
            code = proc.wait(timeout=300)
        log = (move.workdir / "daemon.log").read_text()
        assert code == 0, log[-3000:]
    finally:
        move.source.execute(f"SET GLOBAL tx_isolation = '{default}'")
    assert not appends.errors, appends.errors[:3]
    assert not log_events(move, "checksum before cutover found differences")
    assert len(log_events(move, "checksum before cutover: source and target equal")) == 1
    # Appends went on during the gate (some into its last chunk, while its lock was held).
    started = "finishing the checksum that trailed" if trailing else "checksumming every moved table"
    gate_at = log.index(started)
    assert appends.next_id > 100_001 and "appended" in str(
        move.src("SELECT v FROM _a_moved ORDER BY id DESC LIMIT 1")
    )
    assert gate_at < log.index("checksum before cutover: source and target equal")
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


@pytest.mark.parametrize("trailing", [False, True], ids=["at_cutover", "trailing_copy"])
def test_gate_runs_after_a_postponed_cutover_is_released(move: MoveEnv, trailing: bool) -> None:
    # Its verdict must cover the data at the RENAME: not at the start of a wait that may last days.
    # A gate that trailed the copy compared the copied chunks before the wait; what is left of it
    # (the rows after each table's last copied key, every row appended since) runs after it.
    seed(move, 2000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True, "checksum_during_copy": trailing})
    started = (
        "finishing the checksum that trailed the copy (the apply goes on)"
        if trailing
        else "checksumming every moved table before the cutover (the apply goes on)"
    )
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=2000, pause_s=0.002).start()
    try:
        proc = move.popen("run", "-c", str(cfg))
        wait_for_log(move, "cutover postponed", proc)
        # The wait is reached and held while writes go on: the gate has not run.
        wait_for_log(move, '"state": "COPYING"', proc)
        assert not log_events(move, started), "the gate ran (or finished) before the wait"
        released = move.cli("cutover", "-c", str(cfg))
        assert released.returncode == 0, released.stdout + released.stderr
        assert proc.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    finally:
        load.stop()
    events = log_events(move, "")

    def first(msg: str, **fields: str) -> int:
        return next(
            i
            for i, e in enumerate(events)
            if e["msg"] == msg and all(e.get(k) == v for k, v in fields.items())
        )

    order = [
        first("cutover postponed: release it with `tablemover cutover`"),
        first("cutover released by the operator"),
        first(started),
        first("checksum before cutover: source and target equal"),
        first("state changed", to="CUTOVER_STARTED"),  # the intent: the gate is the last step before it
    ]
    assert order == sorted(order), [events[i]["msg"] for i in order]
    assert len(log_events(move, started)) == 1
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )


def test_a_difference_found_while_copying_stops_the_move_before_the_copy_ends(move: MoveEnv) -> None:
    # The gate trails the copy: a resumed move compares what is already copied (table a, whole)
    # while table b is still being copied, and a difference there stops the move at once (exit 3)
    # instead of after the copy. The first run is killed at a writer commit once a is copied.
    for t, rows in (("a", 2000), ("b", 20_000)):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'seed' FROM seq_1_to_{rows}")
    settings = {"chunk_size": 100, "adaptive_chunk_size": False, "copy_threads": 1}
    cfg = move.config(["a", "b"], move=settings)
    first = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "writer.after_commit:30"})
    assert first.returncode == -9, first.stderr[-2000:]
    progress = json.loads(
        move.target.execute(
            f"SELECT progress FROM {move.checkpoint_table} WHERE kind <> 'owner' ORDER BY seq DESC LIMIT 1"
        )[0][0]
    )
    assert progress["a"]["done"] and not progress["b"]["done"], progress
    move.tgt("UPDATE a SET v = 'changed' WHERE id = 17")  # something else wrote the target
    # b's remaining copy takes seconds (a delay after each chunk read): the gate is faster.
    second = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_DELAYS": "copy.after_read:0.02"})
    assert second.returncode == 3, second.stderr[-3000:]
    assert "checksum before the cutover found rows that differ" in second.stderr
    assert "copy complete and caught up" not in second.stderr, "the copy ended before the refusal"
    assert transitions(move)[-1] == "COPYING"
    assert renames_in_binlog(move, "a") == 0
