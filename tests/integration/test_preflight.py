"""Preflight against real servers: every refusal exits 2 with a useful message and changes nothing.

Each failure runs twice: through ``tablemover.preflight.preflight()`` and through the CLI
(``tablemover run``), which must exit 2 without a traceback. Before and after, both servers'
binlog positions and their lists of schemas and tables are compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import MoveEnv
from tablemover import checkpoint
from tablemover.checkpoint import Checkpoint
from tablemover.config import load_config
from tablemover.errors import PreflightError, SafetyRefusal
from tablemover.local.mariadb import (
    MOVER_PASSWORD,
    MOVER_USER,
    SOURCE_GRANTS,
    TARGET_GRANTS,
    LocalMariaDB,
    free_port,
)
from tablemover.machine import State
from tablemover.preflight import PreflightReport, preflight

ORDERS = "CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2) NOT NULL)"
ITEMS = "CREATE TABLE items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, sku VARCHAR(20))"


def grant_name(db: str) -> str:
    """How a fix statement names ``db`` (wildcards escaped)."""
    return "`" + db.replace("_", "\\_") + "`"


def snapshot(*servers: LocalMariaDB) -> list[object]:
    """What preflight must not change: binlog position, schemas and tables of every server."""
    out: list[object] = []
    for server in servers:
        conn = server.admin()
        try:
            with conn.cursor() as cur:
                for sql in (
                    "SELECT @@global.gtid_binlog_pos",
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1",
                    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
                    "ORDER BY 1, 2",
                ):
                    cur.execute(sql)
                    out.append(cur.fetchall())
        finally:
            conn.close()
    return out


@pytest.fixture(params=["direct", "cli"])
def via(request: pytest.FixtureRequest) -> str:
    """Run each refusal through the Python API and through `tablemover run`."""
    return str(request.param)


@dataclass
class Refusal:
    """Asserts that preflight refuses a config with a message containing every needle."""

    move: MoveEnv
    via: str

    async def __call__(self, cfg: Path, *needles: str, servers: tuple[LocalMariaDB, ...] = ()) -> str:
        watched = (self.move.source, self.move.target, *servers)
        before = snapshot(*watched)
        if self.via == "direct":
            with pytest.raises(PreflightError) as err:
                await preflight(load_config(cfg, env={}))
            text = str(err.value)
        else:
            result = self.move.cli("run", "-c", str(cfg), timeout=60)
            text = result.stderr
            assert result.returncode == 2, (result.returncode, result.stdout[-2000:], text[-3000:])
            assert "Traceback" not in result.stdout + text, text[-3000:]
        for needle in needles:
            assert needle in text, f"{needle!r} not in:\n{text}"
        assert snapshot(*watched) == before, "preflight changed a server"
        return text


@pytest.fixture
def refused(move: MoveEnv, via: str) -> Refusal:
    """The refusal checker for this test's move and mode."""
    return Refusal(move, via)


async def passes(move: MoveEnv, cfg: Path, cli: bool = False) -> PreflightReport:
    """Run preflight (and with ``cli``, `tablemover check`); it passes and changes nothing."""
    before = snapshot(move.source, move.target)
    report = await preflight(load_config(cfg, env={}))
    if cli:
        result = move.cli("check", "-c", str(cfg), timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(move.source, move.target) == before, "preflight changed a server"
    return report


def write_checkpoint(move: MoveEnv, state: State) -> None:
    """A checkpoint row of this move on the target, as the daemon would have left it."""
    db = move.target_database
    move.target.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`", checkpoint.create_table_sql(db))
    conn = move.target.admin()
    try:
        with conn.cursor() as cur:
            cur.execute(
                checkpoint.insert_sql(db),
                checkpoint.insert_args(Checkpoint(move_name=move.name, state=state, applied_gtid="0-1-1")),
            )
    finally:
        conn.close()


# =========================================================================== passing


async def test_healthy_move_passes_and_reports_schemas(move: MoveEnv) -> None:
    move.src(ORDERS, ITEMS, "INSERT INTO orders VALUES (1, 9.99)")
    report = await passes(move, move.config(["orders", "items"]), cli=True)
    assert set(report.schemas) == {"orders", "items"}
    assert report.schemas["orders"].chunk_key == ("id",)
    assert report.checkpoint is None
    assert report.source_info.server_id != report.target_info.server_id


async def test_existing_empty_target_table_is_accepted(move: MoveEnv) -> None:
    move.src(ORDERS, "INSERT INTO orders VALUES (1, 9.99)")
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(ORDERS)
    await passes(move, move.config(["orders"]))


async def test_resume_accepts_target_rows(move: MoveEnv) -> None:
    move.src(ORDERS)
    write_checkpoint(move, State.COPYING)
    move.tgt(ORDERS, "INSERT INTO orders VALUES (1, 1.00)")
    report = await passes(move, move.config(["orders"]))
    assert report.checkpoint is not None and report.checkpoint.state is State.COPYING


# (RENAMED with one table renamed and one not is a state no cutover leaves, which `claims` refuses:
# tests/integration/test_forged_checkpoint.py.)
@pytest.mark.parametrize("state", [State.CUTOVER_STARTED, State.DONE])
async def test_resume_after_rename_inspects_the_renamed_table(move: MoveEnv, state: State) -> None:
    # The source tables are renamed away; a trigger left on one must not block finishing the move.
    move.src(ORDERS, ITEMS, "RENAME TABLE orders TO _orders_moved")
    move.src("CREATE TRIGGER trg AFTER INSERT ON items FOR EACH ROW SET @x = 1")
    write_checkpoint(move, state)
    move.tgt(ORDERS, "INSERT INTO orders VALUES (1, 1.00)")
    report = await passes(move, move.config(["orders", "items"]), cli=state is State.CUTOVER_STARTED)
    assert report.schemas["orders"].name == "_orders_moved"
    assert report.schemas["items"].name == "items"


async def test_resume_after_rename_with_neither_name_is_refused(move: MoveEnv) -> None:
    # Ambiguous source state in RENAMED: the checkpoint's claim is checked against the source
    # before anything else, and refused for an operator (exit 3).
    move.src(ORDERS)
    write_checkpoint(move, State.RENAMED)
    with pytest.raises(SafetyRefusal, match="the source shows otherwise"):
        await preflight(load_config(move.config(["orders", "gone"]), env={}))


# =========================================================================== table refusals


async def test_missing_table(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS)
    await refused(
        move.config(["orders", "nope"]),
        f"table {move.database}.nope does not exist on source 127.0.0.1:{move.source.port}",
        "remove it from [move] tables",
    )


async def test_missing_database(move: MoveEnv, refused: Refusal) -> None:
    cfg = move.config(["orders"], move={"database": "tm_no_such_db"})
    await refused(cfg, "database tm_no_such_db does not exist", "Fix [move] database")


async def test_view_is_not_a_table(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS, "CREATE VIEW v AS SELECT * FROM orders")
    await refused(move.config(["v"]), f"{move.database}.v on source", "is a view, not a table")


async def test_table_without_key(move: MoveEnv, refused: Refusal) -> None:
    # a unique key over a nullable column does not identify rows
    move.src("CREATE TABLE nokey (a INT, b INT, UNIQUE KEY (b))")
    await refused(
        move.config(["nokey"]),
        f"table {move.database}.nokey has no primary or unique key: add one or remove it from [move] tables",
    )


async def test_foreign_keys(move: MoveEnv, refused: Refusal) -> None:
    move.src(
        ORDERS,
        "CREATE TABLE order_lines (id INT PRIMARY KEY, order_id BIGINT NOT NULL, "
        "CONSTRAINT fk_lines_order FOREIGN KEY (order_id) REFERENCES orders (id))",
    )
    db = move.database
    await refused(
        move.config(["orders"]),
        f"table {db}.orders has foreign keys: {db}.order_lines.fk_lines_order (order_id) -> {db}.orders",
        "cannot be kept across two clusters",
        f"ALTER TABLE `{db}`.`order_lines` DROP FOREIGN KEY `fk_lines_order`;",
    )


async def test_triggers(move: MoveEnv, refused: Refusal) -> None:
    move.src(
        ORDERS, "CREATE TRIGGER orders_ins BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = NEW.total"
    )
    db = move.database
    await refused(
        move.config(["orders"]),
        f"table {db}.orders has triggers (orders_ins)",
        "would not fire there",
        f"DROP TRIGGER `{db}`.`orders_ins`;",
    )


async def test_non_innodb_table(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS + " ENGINE=MyISAM")
    await refused(move.config(["orders"]), f"table {move.database}.orders", "uses the MyISAM engine")


async def test_renamed_name_already_taken(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS, "CREATE TABLE _orders_moved (id INT PRIMARY KEY)")
    await refused(
        move.config(["orders"]),
        f"{move.database}._orders_moved already exists on source",
        "renamed_table_format",
    )


async def test_target_table_with_rows_and_no_checkpoint(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS)
    move.target.execute(f"CREATE DATABASE `{move.target_database}`")
    move.tgt(ORDERS, "INSERT INTO orders VALUES (1, 1.00)")
    await refused(
        move.config(["orders"]),
        f"table {move.target_database}.orders already exists on target 127.0.0.1:{move.target.port}",
        "and has rows",
        f"move '{move.name}' has no checkpoint",
        "drop or empty it",
    )


async def test_every_table_problem_is_reported_at_once(move: MoveEnv, refused: Refusal) -> None:
    move.src(
        ORDERS,
        "CREATE TABLE nokey (a INT)",
        "CREATE TRIGGER trg AFTER INSERT ON orders FOR EACH ROW SET @x = 1",
    )
    text = await refused(
        move.config(["orders", "nokey", "nope"]),
        "3 problems",
        "nope does not exist",
        "nokey has no primary or unique key",
        "orders has triggers (trg)",
    )
    assert text.count("  - ") == 3


# =========================================================================== server refusals


async def test_binlog_format_statement(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS)
    cfg = move.config(["orders"])
    move.source.execute("SET GLOBAL binlog_format='STATEMENT'")
    try:
        await refused(
            cfg,
            f"source 127.0.0.1:{move.source.port}: binlog_format is STATEMENT; tablemover needs ROW",
            "SET GLOBAL binlog_format='ROW'",
            "restart the writers' connections",
        )
    finally:
        move.source.execute("SET GLOBAL binlog_format='ROW'")


async def test_binlog_row_image_minimal(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS)
    cfg = move.config(["orders"])
    move.source.execute("SET GLOBAL binlog_row_image='MINIMAL'")
    try:
        await refused(
            cfg,
            f"source 127.0.0.1:{move.source.port}: binlog_row_image is MINIMAL; tablemover needs FULL",
            "SET GLOBAL binlog_row_image='FULL'",
        )
    finally:
        move.source.execute("SET GLOBAL binlog_row_image='FULL'")


@pytest.fixture
def weak_user(move: MoveEnv) -> Iterator[str]:
    """A user missing BINLOG MONITOR, ALTER and DROP on the source and UPDATE, DELETE, DROP, ALTER on
    the target (and DELETE, DROP on the state schema)."""
    for server in (move.source, move.target):
        server.execute(
            "DROP USER IF EXISTS 'weak'@'%'",
            "CREATE USER 'weak'@'%' IDENTIFIED BY 'weak-pass'",
            "GRANT SELECT, INSERT, CREATE ON `tm\\_%`.* TO 'weak'@'%'",
        )
    move.source.execute("GRANT REPLICATION SLAVE ON *.* TO 'weak'@'%'")
    yield "weak"
    for server in (move.source, move.target):
        server.execute("DROP USER IF EXISTS 'weak'@'%'")


async def test_missing_privileges(move: MoveEnv, refused: Refusal, weak_user: str) -> None:
    move.src(ORDERS)
    login = {"user": weak_user, "password": "weak-pass"}
    cfg = move.config(["orders"], source=login, target=login)
    db, tdb = move.database, move.target_database
    text = await refused(
        cfg,
        f"source 127.0.0.1:{move.source.port}: user 'weak'@'%' lacks privileges tablemover needs",
        "BINLOG MONITOR on *.* (binlog positions, SHOW BINARY LOGS and SHOW BINLOG EVENTS)",
        f"ALTER, DROP on {db}.orders (the cutover's RENAME TABLE moves the table away)",
        f"DROP on {db}._orders_moved (`cleanup --drop-source` drops the renamed source table)",
        f"target 127.0.0.1:{move.target.port}: user 'weak'@'%' lacks privileges",
        f"UPDATE, DELETE on {tdb}.orders",
        f"DELETE, DROP on {move.state_database}.*",
        "GRANT BINLOG MONITOR ON *.* TO 'weak'@'%';",
        # table-level, quoted literally; CREATE rides along where the table may not exist yet
        f"GRANT ALTER, DROP ON `{db}`.`orders` TO 'weak'@'%';",
        f"GRANT DROP, CREATE ON `{db}`.`_orders_moved` TO 'weak'@'%';",
        f"GRANT UPDATE, DELETE, DROP, ALTER, CREATE ON `{tdb}`.`orders` TO 'weak'@'%';",
        # granting on the exact state schema hides the `tm\\_%` grant, so the fix repeats what that gave
        f"GRANT DELETE, DROP, SELECT, INSERT, CREATE ON {grant_name(move.state_database)}.* TO 'weak'@'%';",
        "which the user has from a wildcard database grant",
    )
    if refused.via == "direct":
        # The statements in the message are exactly what it takes.
        source_part, target_part = text.split(f"target 127.0.0.1:{move.target.port}: ")
        move.source.execute(*re.findall(r"GRANT [^;]*", source_part))
        move.target.execute(*re.findall(r"GRANT [^;]*", target_part))
        await preflight(load_config(cfg, env={}))


async def test_privileges_through_a_default_role_count(move: MoveEnv) -> None:
    move.src(ORDERS)
    for server, grants in ((move.source, SOURCE_GRANTS), (move.target, TARGET_GRANTS)):
        server.execute(
            "DROP USER IF EXISTS 'roled'@'%'",
            "DROP ROLE IF EXISTS tm_mover_role",
            "CREATE ROLE tm_mover_role",
            *(g.format(user="", db="tm\\_%").replace("TO ''@'%'", "TO tm_mover_role") for g in grants),
            "CREATE USER 'roled'@'%' IDENTIFIED BY 'roled-pass'",
            "GRANT tm_mover_role TO 'roled'@'%'",
        )
    try:
        login = {"user": "roled", "password": "roled-pass"}
        cfg = move.config(["orders"], source=login, target=login)
        with pytest.raises(PreflightError, match="roles granted but none active: tm_mover_role"):
            await preflight(load_config(cfg, env={}))
        for server in (move.source, move.target):
            server.execute("SET DEFAULT ROLE tm_mover_role FOR 'roled'@'%'")
        await passes(move, cfg)
    finally:
        for server in (move.source, move.target):
            server.execute("DROP USER IF EXISTS 'roled'@'%'", "DROP ROLE IF EXISTS tm_mover_role")


async def test_same_server(move: MoveEnv, refused: Refusal) -> None:
    move.src(ORDERS)
    cfg = move.config(["orders"], target={"port": move.source.port})
    await refused(
        cfg,
        f"source 127.0.0.1:{move.source.port} and target 127.0.0.1:{move.source.port} are the same server",
        "Point [target] host/port",
    )


async def test_unreachable_server(move: MoveEnv, refused: Refusal) -> None:
    port = free_port()  # nothing listens there
    await refused(
        move.config(["orders"], source={"port": port}),
        f"cannot reach source server 127.0.0.1:{port}",
        "[source] host/port",
    )


async def test_bad_credentials(move: MoveEnv, refused: Refusal) -> None:
    await refused(
        move.config(["orders"], target={"password": "wrong"}),
        f"target server 127.0.0.1:{move.target.port} as user '{MOVER_USER}': access denied",
        "Check [target] user/password/password_file",
    )


@pytest.fixture(scope="module")
def no_binlog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMariaDB]:
    """A server started with --skip-log-bin, where the mover has its usual grants."""
    server = LocalMariaDB(tmp_path_factory.mktemp("nobinlog"), server_id=77, extra_args=["--skip-log-bin"])
    server.install()
    server.start()
    try:
        assert server.execute("SELECT @@log_bin") == [(0,)], "--skip-log-bin did not turn the binlog off"
        server.execute(
            f"CREATE USER '{MOVER_USER}'@'%' IDENTIFIED BY '{MOVER_PASSWORD}'",
            "DELETE FROM mysql.global_priv WHERE User=''",
            "FLUSH PRIVILEGES",
            *(g.format(user=MOVER_USER, db="tm\\_%") for g in SOURCE_GRANTS),
        )
        yield server
    finally:
        server.stop()


async def test_binlog_off(move: MoveEnv, refused: Refusal, no_binlog_server: LocalMariaDB) -> None:
    cfg = move.config(["orders"], source={"port": no_binlog_server.port})
    await refused(
        cfg,
        f"source 127.0.0.1:{no_binlog_server.port}: binary logging is off (log_bin=0)",
        "restart the server",
        servers=(no_binlog_server,),
    )


# =========================================================================== config refusals (CLI only)


@pytest.mark.parametrize(
    ("tables", "sections", "needle"),
    [
        (["orders"], {"move": {"postpone_cutovr": True}}, "move.postpone_cutovr: unknown key"),
        (["orders"], {"source": {"port": 70000}}, "source.port"),
        ([], {}, "move.tables"),
    ],
    ids=["unknown-key", "bad-port", "no-tables"],
)
def test_invalid_config(
    move: MoveEnv, tables: list[str], sections: dict[str, dict[str, object]], needle: str
) -> None:
    before = snapshot(move.source, move.target)
    result = move.cli("run", "-c", str(move.config(tables, **sections)), timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "invalid configuration" in result.stderr
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(move.source, move.target) == before
