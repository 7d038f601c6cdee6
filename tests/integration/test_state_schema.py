"""The move's state lives in a schema of its own (`_tablemover` by default), where the
application's accounts, with DML on the application schema, cannot write a row the daemon would
read as the move's state; the data and its checkpoint still commit together."""

from __future__ import annotations

import pymysql
import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, transitions

APP_USER = "tm_app_user"
APP_PASSWORD = "app-secret-1"


def _app_account(move: MoveEnv) -> None:
    """An application account as deployments have it: every DML right on the target schema."""
    move.target.execute(
        f"CREATE USER IF NOT EXISTS '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{move.target_database}`.* TO '{APP_USER}'@'%'",
    )


def _as_app(move: MoveEnv, statement: str) -> None:
    conn = pymysql.connect(
        host="127.0.0.1", port=move.target.port, user=APP_USER, password=APP_PASSWORD, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_the_default_state_schema_keeps_the_checkpoint_away_from_the_application(move: MoveEnv) -> None:
    move.state_database = "_tablemover"  # the default (the fixture drops it afterwards)
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))",
        "INSERT INTO a SELECT seq, seq % 97, 'seed' FROM seq_1_to_2000",
    )
    text = move.config_text(["a"]).replace('state_database = "_tablemover"\n', "")
    assert "state_database" not in text  # the daemon's own default, not the test's setting
    cfg = move.workdir / "move.toml"
    cfg.write_text(text)
    first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    # Nothing of the move's state beside the application's tables; all of it in `_tablemover`.
    assert [r[0] for r in move.tgt("SHOW TABLES")] == ["a"]
    assert transitions(move)[:2] == ["PREPARED", "COPYING"]
    # The application's account cannot forge a state row there.
    _app_account(move)
    try:
        with pytest.raises(pymysql.err.OperationalError) as denied:
            _as_app(
                move,
                "INSERT INTO _tablemover._tablemover_checkpoint (seq, move_name, state, kind, "
                "applied_gtid, progress, writer) VALUES (999, 't', 'RENAMED', 'transition', '', '{}', 'x')",
            )
        assert denied.value.args[0] == 1142, denied.value.args  # INSERT command denied
        # ...while it writes the application schema as before.
        _as_app(move, f"INSERT INTO `{move.target_database}`.a VALUES (9000, 1, 'app')")
    finally:
        move.target.execute(f"DROP USER IF EXISTS '{APP_USER}'@'%'")
    move.tgt("DELETE FROM a WHERE id = 9000")  # the source never had that row
    load = WriteLoad(move.source, move.database, ["a"], key_space=2000, pause_s=0.002).start()
    try:
        run = move.cli("run", "-c", str(cfg))
    finally:
        load.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
    cleaned = move.cli("cleanup", "-c", str(cfg))
    assert cleaned.returncode == 0, cleaned.stderr[-3000:]
    assert "dropped _tablemover._tablemover_checkpoint" in cleaned.stdout, cleaned.stdout
    assert not move.target.execute(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_tablemover'"
    )
