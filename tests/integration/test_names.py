"""Names as the servers resolve them (lower_case_table_names), on real servers.

Both servers of a pair of their own are initialised with ``--lower-case-table-names=1``: they store
``Orders`` as ``orders`` and their binlogs name it so. The configuration spells the database and
the table as the application does (``Orders``): every write, during the copy and after it, reaches
the target; a TRUNCATE spelling the table in capitals is recognised and refused. With the default
(0) names compare as spelt, and a name that differs only in case is a preflight error.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from conftest import TEST_SCHEMA_GRANT, MoveEnv, drop_move_schemas, make_move_env
from support import WriteLoad, transitions, wait_for_log
from tablemover.local.mariadb import LocalMariaDB, LocalPair, find_mariadbd, grant_mover, start_pair

TABLE = (
    "CREATE TABLE Orders (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), "
    "b VARBINARY(16), note TEXT CHARACTER SET latin1)"
)
COLUMNS = ("id", "k", "v", "b", "note")
WAIT_S = 120


@pytest.fixture(scope="module")
def lctn_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """Source + target initialised with lower_case_table_names=1 (only possible at install time)."""
    if find_mariadbd() is None:
        pytest.fail("mariadbd is not installed: run `make setup`", pytrace=False)
    root = tmp_path_factory.mktemp("servers-lctn1")
    pair = start_pair(root=root, extra_args=("--lower-case-table-names=1",))
    grant_mover(pair, TEST_SCHEMA_GRANT, window=True)
    yield pair
    pair.stop()


@pytest.fixture
def lctn_move(lctn_pair: LocalPair, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move on the lower_case_table_names=1 pair; a daemon a failed test left is killed."""
    env = make_move_env(lctn_pair, tmp_path)
    yield env
    for proc in env.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    drop_move_schemas(env)


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[str, ...]]:
    """Every row, each column as HEX() (NULL stays None): byte-for-byte comparable."""
    select = ", ".join(f"HEX(`{c}`)" for c in COLUMNS)
    return [tuple(r) for r in server.execute(f"SELECT {select} FROM `{database}`.`{table}` ORDER BY id")]


def seed(move: MoveEnv, count: int = 3000) -> None:
    move.src(
        TABLE,
        f"INSERT INTO ORDERS SELECT seq, seq % 97, CONCAT('seed-', seq), UNHEX(MD5(seq)), "
        f"IF(seq % 3, NULL, 'caf\\xe9') FROM seq_1_to_{count}",
    )


def mixed_case_config(move: MoveEnv, **keys: object) -> Path:
    """The application's spelling: database and table names not as the server stored them."""
    path = move.workdir / "move.toml"
    text = move.config_text(
        ["Orders"],
        move={"database": move.database.upper(), "target_database": move.target_database.upper(), **keys},
    )
    path.write_text(text)
    return path


def session(server: LocalMariaDB, database: str, *statements: str) -> None:
    conn = pymysql.connect(unix_socket=server.socket, user="root", database=database, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def start_postponed(move: MoveEnv, cfg: Path) -> subprocess.Popen[str]:
    proc = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", proc, timeout=WAIT_S)
    return proc


def test_mixed_case_names_move_every_write(lctn_move: MoveEnv) -> None:
    move = lctn_move
    assert move.source.execute("SELECT @@lower_case_table_names") == [(1,)]
    seed(move)
    cfg = mixed_case_config(move, chunk_size=100, postpone_cutover=True)
    # Writes during the copy, spelt as the application spells the table.
    load = WriteLoad(move.source, move.database.upper(), ["Orders", "ORDERS"], key_space=4000, pause_s=0.002)
    load.start()
    try:
        proc = start_postponed(move, cfg)
    finally:
        ops = load.stop()
    assert ops > 0 and not load.errors, load.errors[:3]
    # Writes after the copy and the catch-up: insert, update, key update, delete, in any spelling.
    session(
        move.source,
        move.database.upper(),
        "INSERT INTO Orders VALUES (900001, 1, 'late insert', x'00ff00', 'd\\xe9j\\xe0')",
        "UPDATE ORDERS SET v = 'late update', b = x'0000' WHERE id = 17",
        "UPDATE orders SET id = 900002 WHERE id = 18",
        f"DELETE FROM `{move.database.upper()}`.`OrDeRs` WHERE id BETWEEN 20 AND 40",
    )
    status = move.cli("status", "-c", str(cfg), "--json")
    assert status.returncode == 0 and '"orders"' in status.stdout, status.stdout[-2000:]
    release = move.cli("cutover", "-c", str(cfg))
    assert release.returncode == 0, release.stderr[-2000:]
    assert proc.wait(timeout=WAIT_S) == 0, (move.workdir / "daemon.log").read_text()[-3000:]

    assert transitions(move)[-3:] == ["DRAINED", "HOOK_FIRED", "DONE"]
    # The RENAME used the stored name: the source holds _orders_moved, the target orders.
    assert [r[0] for r in move.src("SHOW TABLES")] == ["_orders_moved"]
    assert "orders" in [r[0] for r in move.tgt("SHOW TABLES")]
    source = hex_rows(move.source, move.database, "_orders_moved")
    target = hex_rows(move.target, move.target_database, "orders")
    assert source == target
    ids = {int(r[0], 16) for r in target}
    assert {900001, 900002} <= ids and 18 not in ids and not ids & set(range(20, 41))
    # The checkpoint names the table as stored; verify and status find it under the config's spelling.
    keys = move.target.execute(
        f"SELECT progress FROM `{move.state_database}`._tablemover_checkpoint WHERE kind='transition' "
        "ORDER BY id DESC LIMIT 1"
    )
    assert '"orders"' in str(keys[0][0]) and "Orders" not in str(keys[0][0])
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
    cleanup = move.cli("cleanup", "-c", str(cfg), "--drop-source", "--yes")
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr[-2000:]
    assert move.src("SHOW TABLES") == []


@pytest.mark.parametrize("spelling", ["TRUNCATE ORDERS", "TRUNCATE TABLE {DB}.Orders"])
def test_a_truncate_in_another_spelling_stops_the_move(lctn_move: MoveEnv, spelling: str) -> None:
    move = lctn_move
    seed(move, 500)
    cfg = mixed_case_config(move, postpone_cutover=True)
    proc = start_postponed(move, cfg)
    before = hex_rows(move.target, move.target_database, "orders")
    session(move.source, move.database, spelling.format(DB=move.database.upper()))
    assert proc.wait(timeout=WAIT_S) == 3, (move.workdir / "daemon.log").read_text()[-3000:]
    log = (move.workdir / "daemon.log").read_text()
    assert "TRUNCATE" in log and f"{move.database}.orders" in log, log[-3000:]
    assert hex_rows(move.target, move.target_database, "orders") == before, "nothing of it applied"
    assert transitions(move)[-1] == "FAILED"
    again = move.cli("run", "-c", str(cfg))
    assert again.returncode == 3, again.stderr[-2000:]


def test_the_rollback_window_under_folded_names(lctn_move: MoveEnv) -> None:
    """The reverse feed screens the target's binlog by the stored names; the RENAMEs use them."""
    move = lctn_move
    seed(move, 500)
    cfg = mixed_case_config(move, rollback_window_s=600)
    proc = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", proc, timeout=WAIT_S)
    session(
        move.target,
        move.target_database.upper(),
        "INSERT INTO ORDERS VALUES (700001, 1, 'on the target', x'ff', NULL)",
        "UPDATE Orders SET v = 'changed on the target' WHERE id = 5",
        "DELETE FROM orders WHERE id = 6",
    )
    result = move.cli("rollback", "-c", str(cfg), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert proc.wait(timeout=WAIT_S) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert [r[0] for r in move.src("SHOW TABLES") if r[0] != "_tablemover_checkpoint"] == ["orders"]
    source = hex_rows(move.source, move.database, "orders")
    assert source == hex_rows(move.target, move.target_database, "_orders_rolledback")
    assert any(int(r[0], 16) == 700001 for r in source)


def test_a_name_matching_no_table_is_a_preflight_error(lctn_move: MoveEnv) -> None:
    move = lctn_move
    seed(move, 10)
    cfg = move.config(["Orderz"])
    check = move.cli("check", "-c", str(cfg))
    assert check.returncode == 2, check.stderr
    assert f"{move.database}.orderz does not exist" in check.stderr, check.stderr


def test_a_name_differing_only_in_case_is_a_preflight_error_with_lctn_0(move: MoveEnv) -> None:
    assert move.source.execute("SELECT @@lower_case_table_names") == [(0,)]
    move.src("CREATE TABLE orders (id INT PRIMARY KEY)")
    check = move.cli("check", "-c", str(move.config(["Orders"])))
    assert check.returncode == 2, check.stderr
    assert f"table {move.database}.Orders does not exist" in check.stderr, check.stderr
    assert "The server has orders, which differs only in case" in check.stderr, check.stderr
    cfg = move.workdir / "upper.toml"
    cfg.write_text(move.config_text(["orders"], move={"database": move.database.upper()}))
    check = move.cli("check", "-c", str(cfg))
    assert check.returncode == 2, check.stderr
    assert f"The server has {move.database}, which differs only in case" in check.stderr, check.stderr


def test_lower_case_table_names_2_is_0_on_linux(tmp_path: Path) -> None:
    """MariaDB on a case-sensitive file system turns 2 into 0 (with a warning): nothing to support
    there. (On a case-insensitive one preflight refuses 2: preflight/names.py.)"""
    server = LocalMariaDB(tmp_path / "lctn2", server_id=7, extra_args=("--lower-case-table-names=2",))
    server.install()
    server.start()
    try:
        assert server.execute("SELECT @@lower_case_table_names") == [(0,)]
    finally:
        server.stop()
