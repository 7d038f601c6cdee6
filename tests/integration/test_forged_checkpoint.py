"""A checkpoint row is a claim: a forged one is refused (exit 3) and nothing is done on its word.

The checkpoint table lives in a schema where the application's accounts may have DML. A row
``state='RENAMED'`` slipped in while the source tables were never renamed must not make the next
run drain, fire on-success and finish with both sides writable; a ``COPYING`` row after ``DONE``
must not restart a finished move.
"""

from __future__ import annotations

from conftest import MoveEnv
from support import checkpoint_table, write_hook

COLUMNS = (
    "move_name, state, kind, applied_gtid, drain_gtid, progress, rows_copied, events_applied, detail, writer"
)


def forge(
    move: MoveEnv, state: str, drain: str = "drain_gtid", kind: str = "transition", writer: str = ""
) -> None:
    """Append a copy of the newest row with another state and the next ``seq``, as an account with
    DML on the schema could (the newest row is the one with the highest seq). The copy keeps the
    newest row's writer unless ``writer`` names another."""
    table = checkpoint_table(move)
    select = (
        COLUMNS.replace("state,", f"'{state}',")
        .replace("kind,", f"'{kind}',")
        .replace("drain_gtid,", f"{drain},")
        .replace(", writer", f", '{writer}'" if writer else ", writer")
    )
    move.tgt(
        f"INSERT INTO {table} ({COLUMNS}, seq) SELECT {select}, seq + 1 FROM {table} "
        "WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
    )


def test_a_forged_renamed_row_fires_nothing(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_400")
    hooks = move.workdir / "hooks"
    marker = move.workdir / "on-success-ran"
    write_hook(hooks, "on-success", f"touch {marker}\n")
    cfg = str(move.config(["a"], move={"hooks_dir": str(hooks)}))
    assert move.cli("run", "--stop-before-cutover", "-c", cfg).returncode == 0
    table = checkpoint_table(move)
    genuine = move.tgt(f"SELECT MAX(id) FROM {table}")[0][0]
    forge(move, "RENAMED", drain="applied_gtid")

    run = move.cli("run", "-c", cfg)
    assert run.returncode == 3, run
    assert "refusing to resume" in run.stderr and "COPYING" in run.stderr and "RENAMED" in run.stderr, (
        run.stderr
    )
    assert not marker.exists(), "on-success fired on a forged row"
    assert move.src("SHOW TABLES") == [("a",)], "the source must stay as it was"
    # A forger who writes a whole plausible history passes the history check; the source says no.
    move.tgt(f"DELETE FROM {table} WHERE id > {genuine}")
    forge(move, "CUTOVER_STARTED")
    forge(move, "RENAMED", drain="applied_gtid")
    again = move.cli("run", "-c", cfg)
    assert again.returncode == 3, again
    assert "the source shows otherwise" in again.stderr, again.stderr
    assert not marker.exists() and move.src("SHOW TABLES") == [("a",)]


def test_a_forged_copying_row_after_done_restarts_nothing(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_400")
    cfg = str(move.config(["a"]))
    assert move.cli("run", "-c", cfg).returncode == 0
    table = checkpoint_table(move)
    rows_before = move.tgt(f"SELECT COUNT(*) FROM {table}")[0][0]
    forge(move, "COPYING")

    run = move.cli("run", "-c", cfg)
    assert run.returncode == 3, run
    assert "from DONE" in run.stderr and "to COPYING" in run.stderr, run.stderr
    assert move.tgt(f"SELECT COUNT(*) FROM {table}")[0][0] == rows_before + 1, (
        "nothing written after the forged row"
    )
    assert move.src("SHOW TABLES") == [("_a_moved",)]
    assert move.tgt("SELECT COUNT(*) FROM a") == [(400,)]


def test_a_row_written_by_another_than_the_owner_is_refused(move: MoveEnv) -> None:
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v INT)", "INSERT INTO a SELECT seq, seq FROM seq_1_to_400")
    cfg = str(move.config(["a"]))
    assert move.cli("run", "--stop-before-cutover", "-c", cfg).returncode == 0
    table = checkpoint_table(move)
    owner = move.tgt(f"SELECT writer FROM {table} WHERE kind = 'owner' ORDER BY id DESC LIMIT 1")
    assert owner, "the daemon recorded itself as the move's owner"
    # A step the machine takes (COPYING -> COPYING progress), but not by the move's owner.
    forge(move, "COPYING", kind="progress", writer="app@10.0.0.7")
    forged = move.tgt(f"SELECT MAX(id), COUNT(*) FROM {table}")[0]

    run = move.cli("run", "-c", cfg)
    assert run.returncode == 3, run
    message = run.stderr
    assert f"checkpoint row {forged[0]} (progress COPYING" in message, message
    assert "'app@10.0.0.7'" in message and repr(owner[0][0]) in message, message
    assert "remove the rows that are not the move's" in message, message
    assert move.tgt(f"SELECT MAX(id), COUNT(*) FROM {table}")[0] == forged, "nothing written after it"
    assert move.src("SHOW TABLES") == [("a",)], "the source must stay as it was"

    # The operator removes the forged row: the move resumes and finishes, offline abort included
    # (its own owner row makes its ABORTED row the owner's).
    move.tgt(f"DELETE FROM {table} WHERE id = {forged[0]}")
    assert move.cli("abort", "-c", cfg).returncode == 0
    done = move.cli("run", "-c", cfg)
    assert done.returncode == 0, done.stderr[-3000:]
    assert move.src("SHOW TABLES") == [("_a_moved",)]
    assert move.tgt("SELECT COUNT(*) FROM a") == [(400,)]
