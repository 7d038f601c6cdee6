"""Every statement shape the copier, the writer and verify send uses the key (EXPLAIN on mariadbd).

The statements come from the same builders the code calls (``tablemover.sql``), with arguments
built the same way (``Col.of`` from the inspected schema), so a builder that regresses to a shape
the optimizer runs as a scan fails here. Tables hold a few thousand rows and are ANALYZEd, so the
optimizer has no "the table is tiny, scan it" excuse. Keys: one column; two columns (INT, VARCHAR
in utf8mb4_unicode_ci); three columns with the ENUM first and with it in the middle; a latin1
VARCHAR in latin1_swedish_ci holding 0x80-0xFF; utf8mb4_bin CHAR and BINARY(16).

A statement fails on ``access_type`` ALL (full table scan) or ``index`` (full index scan), with one
exception: a statement with a LIMIT and no WHERE (the first chunk read, the first verify
boundary) reads the index from its start and stops after LIMIT (+ OFFSET) entries, so the "full
index scan" is bounded by the chunk size. Reads in key order with a LIMIT must also not sort
(``filesort``): a sort reads the whole range before the LIMIT applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from conftest import MoveEnv
from tablemover import checkpoint as cpstore
from tablemover import sql
from tablemover.config import load_config
from tablemover.db import close, connect
from tablemover.schema import TableSchema, inspect_table, sql_col

TABLES = {
    "single": (
        "CREATE TABLE single (id INT NOT NULL PRIMARY KEY, v VARCHAR(20), n INT)",
        "INSERT INTO single SELECT seq * 3, CONCAT('v', seq), seq % 7 FROM seq_1_to_5000",
    ),
    "comp2": (
        "CREATE TABLE comp2 (a INT NOT NULL, s VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL, v INT, "
        "PRIMARY KEY (a, s))",
        "INSERT INTO comp2 SELECT seq DIV 10, CONCAT('k', seq), seq FROM seq_1_to_5000",
    ),
    "enum_first": (
        "CREATE TABLE enum_first (e ENUM('red','green','blue','orange') NOT NULL, a INT NOT NULL, "
        "s VARCHAR(20) NOT NULL, v INT, PRIMARY KEY (e, a, s))",
        "INSERT INTO enum_first SELECT ELT(1 + seq % 4, 'red', 'green', 'blue', 'orange'), seq DIV 20, "
        "CONCAT('s', seq % 9), seq FROM seq_1_to_6000",
    ),
    "enum_middle": (
        "CREATE TABLE enum_middle (a INT NOT NULL, e ENUM('red','green','blue','orange') NOT NULL, "
        "s VARCHAR(20) NOT NULL, v INT, PRIMARY KEY (a, e, s))",
        "INSERT INTO enum_middle SELECT seq DIV 40, ELT(1 + seq % 4, 'red', 'green', 'blue', 'orange'), "
        "CONCAT('s', seq), seq FROM seq_1_to_6000",
    ),
    # Character keys compare their bytes as CONVERT(_binary'..' USING cs) COLLATE coll (sql.Col.marker):
    # latin1 in a case-insensitive collation, holding the bytes Python's cp1252 cannot decode.
    "latin1_ci": (
        "CREATE TABLE latin1_ci (k VARCHAR(8) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL "
        "PRIMARY KEY, v VARCHAR(20) CHARACTER SET latin1)",
        "INSERT INTO latin1_ci SELECT CONCAT(CONVERT(LPAD(seq, 4, '0') USING latin1), "
        "CHAR(128 + seq % 128 USING latin1)), CHAR(128 + seq % 128 USING latin1) FROM seq_1_to_5000",
    ),
    "bin_comp": (
        "CREATE TABLE bin_comp (a CHAR(3) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
        "b BINARY(16) NOT NULL, t TEXT CHARACTER SET ascii, PRIMARY KEY (a, b))",
        "INSERT INTO bin_comp SELECT CONCAT('é', seq DIV 100), UNHEX(MD5(seq)), 'x' FROM seq_1_to_5000",
    ),
}
ROW_COUNTS = (1, 2, 50)


def _accesses(plan: Any) -> Iterator[dict[str, Any]]:
    """Every table access node of an EXPLAIN FORMAT=JSON plan."""
    if isinstance(plan, dict):
        if "access_type" in plan:
            yield plan
        for value in plan.values():
            yield from _accesses(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _accesses(value)


class Explainer:
    """Runs EXPLAIN FORMAT=JSON for a statement and its arguments on the target, as root."""

    def __init__(self, move: MoveEnv) -> None:
        # Bytes rendered as _binary'...', as the daemon's connections do (db.connect).
        self.conn = pymysql.connect(
            unix_socket=move.target.socket,
            user="root",
            database=move.target_database,
            charset="utf8mb4",
            binary_prefix=True,
            autocommit=True,
        )

    def plan(self, text: str, args: list[object]) -> tuple[str, dict[str, Any]]:
        with self.conn.cursor() as cur:
            statement = cur.mogrify(text, args) if args else text
            cur.execute(f"EXPLAIN FORMAT=JSON {statement}")
            row = cur.fetchone()
        assert row is not None
        return statement, json.loads(row[0])

    def assert_uses_key(self, what: str, text: str, args: list[object], *, writes_rows: bool = False) -> None:
        statement, plan = self.plan(text, args)
        # The range checksum reads its chunk into a derived table (sql.checksum_range: each row's
        # digest once) and aggregates that: its scan reads the chunk's rows, not the table's.
        accesses = [a for a in _accesses(plan) if not str(a.get("table_name", "")).startswith("<derived")]
        shown = f"{what}: {statement[:300]}\n{json.dumps(plan, indent=1)[:3000]}"
        if writes_rows:
            # INSERT / REPLACE ... VALUES: the server looks rows up by unique key; the plan lists no
            # table access at all, and must never list a scan.
            assert all(a["access_type"] not in ("ALL", "index") for a in accesses), shown
            return
        assert accesses, f"no table access listed (impossible WHERE?): {shown}"
        bounded = " LIMIT " in text and " WHERE " not in text
        for access in accesses:
            allowed = {"ALL"} if bounded else {"ALL", "index"}
            assert access["access_type"] not in allowed, shown
            assert access.get("key") in ("PRIMARY", None) or access["access_type"] != "index", shown
        if " LIMIT " in text:
            assert "filesort" not in json.dumps(plan), f"sorts before the LIMIT: {shown}"

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def explainer(move: MoveEnv) -> Iterator[Explainer]:
    move.target.execute(f"CREATE DATABASE IF NOT EXISTS `{move.target_database}`")
    for ddl, fill in TABLES.values():
        move.tgt(ddl, fill)
    move.tgt(f"ANALYZE TABLE {', '.join(TABLES)}")
    ex = Explainer(move)
    yield ex
    ex.close()


async def _schema(move: MoveEnv, table: str) -> TableSchema:
    config = load_config(move.config([table]))
    conn = await connect(config.target, "target")
    try:
        return await inspect_table(conn, move.target_database, table)
    finally:
        await close(conn)


def _cols(schema: TableSchema, names: tuple[str, ...]) -> list[sql.Col]:
    return [sql_col(c) for c in map(schema.column, names)]


def _rows(move: MoveEnv, schema: TableSchema) -> list[tuple[Any, ...]]:
    """Every row (writable columns) in key order, as the copier reads them (names for ENUMs,
    character columns as their bytes)."""
    names = sql.read_list(_cols(schema, tuple(c.name for c in schema.writable_columns)))
    order = sql.column_list(schema.chunk_key or ())
    return [tuple(r) for r in move.tgt(f"SELECT {names} FROM {schema.name} ORDER BY {order}")]


@pytest.mark.parametrize("table", list(TABLES))
async def test_every_statement_shape_uses_the_key(move: MoveEnv, explainer: Explainer, table: str) -> None:
    db = move.target_database
    schema = await _schema(move, table)
    key_names = schema.chunk_key
    assert key_names is not None
    columns = _cols(schema, tuple(c.name for c in schema.writable_columns))
    key = _cols(schema, key_names)
    positions = [columns.index(k) for k in key]
    rows = _rows(move, schema)
    keys = [tuple(r[p] for p in positions) for r in rows]
    lower, upper = keys[len(keys) // 3], keys[2 * len(keys) // 3]
    # The last key with the ENUM's last member: "after" it drops the empty IN list.
    lower_keys = [lower, next(k for k in reversed(keys) if "orange" not in k)]
    lower_keys += [k for k in keys if "orange" in k][:1]

    # --- the writer: deletes by key, upserts (binlog REPLACE, copy INSERT keeping existing rows)
    names = [c.name for c in schema.writable_columns]
    for n in ROW_COUNTS:
        picked = [rows[i * len(rows) // n] for i in range(n)]
        picked_keys = [tuple(r[p] for p in positions) for r in picked]
        explainer.assert_uses_key(
            f"delete {n}", sql.delete_keys(db, table, key, n), [v for k in picked_keys for v in k]
        )
        flat = [v for r in picked for v in r]
        explainer.assert_uses_key(
            f"replace {n}", sql.insert_rows(db, table, names, n, verb="REPLACE"), flat, writes_rows=True
        )
        keep = sql.insert_rows(db, table, names, n, keep_existing_on=key_names[0])
        explainer.assert_uses_key(f"insert keeping {n}", keep, flat, writes_rows=True)

    # --- the copier: chunk reads from the start and after a key
    for limit in ROW_COUNTS:
        first = sql.select_chunk(db, table, columns, key, after=None, limit=limit)
        explainer.assert_uses_key(f"first chunk of {limit}", first.text, first.args)
        for after in lower_keys:
            chunk = sql.select_chunk(db, table, columns, key, after=after, limit=limit)
            explainer.assert_uses_key(f"chunk of {limit} after {after}", chunk.text, chunk.args)

    # --- verify: chunk boundaries, range checksums and range reads. Verify sends a range with
    # neither bound only for a table smaller than one chunk (a scan of fewer than VERIFY_CHUNK rows).
    for step in (1, 2, 50, 2000):
        first = sql.key_boundary(db, table, key, after=None, step=step)
        explainer.assert_uses_key(f"first boundary {step}", first.text, first.args)
        for after in lower_keys:
            boundary = sql.key_boundary(db, table, key, after=after, step=step)
            explainer.assert_uses_key(f"boundary {step} after {after}", boundary.text, boundary.args)
    # The live gate (gate.LiveGate) cuts key intervals (lower, upper] the same way, the boundary
    # bounded by the interval's upper key; its chunks are the ranged checksums below.
    for step in (1, 50, 2000):
        for low, high in ((lower, upper), (None, upper)):
            bounded = sql.key_boundary(db, table, key, after=low, upper=high, step=step)
            explainer.assert_uses_key(f"boundary {step} in ({low}, {high}]", bounded.text, bounded.args)
    for low, high in ((lower, upper), (None, upper), (lower, None), (lower_keys[-1], None)):
        checksum = sql.checksum_range(db, table, columns, key, lower=low, upper=high)
        explainer.assert_uses_key(f"checksum ({low}, {high}]", checksum.text, checksum.args)
        locked = sql.checksum_range(db, table, columns, key, lower=low, upper=high, lock=True)
        explainer.assert_uses_key(f"locked checksum ({low}, {high}]", locked.text, locked.args)
        select = sql.select_range(db, table, columns, key, lower=low, upper=high)
        explainer.assert_uses_key(f"range read ({low}, {high}]", select.text, select.args)


def test_the_old_composite_delete_shape_was_a_full_scan(move: MoveEnv, explainer: Explainer) -> None:
    """The check above can fail: ``(a, b) IN ((%s, %s))`` is the scan this file guards against."""
    statement, plan = explainer.plan("DELETE FROM comp2 WHERE (a, s) IN ((%s, %s))", [5, "k55"])
    assert [a["access_type"] for a in _accesses(plan)] == ["ALL"], statement
    with pytest.raises(AssertionError):
        explainer.assert_uses_key("old delete", "DELETE FROM comp2 WHERE (a, s) IN ((%s, %s))", [5, "k55"])
    # And an ENUM compared with ">" is never an index range, by name or by number.
    for value in ("'green'", "2"):
        _, plan = explainer.plan(f"SELECT v FROM enum_first WHERE e > {value}", [])
        assert [a["access_type"] for a in _accesses(plan)] in (["ALL"], ["index"])


def test_heartbeat_statements_use_the_primary_key(move: MoveEnv, explainer: Explainer) -> None:
    """The replica heartbeat (replicas.py): written and read by (move, side), never a scan."""
    from tablemover import replicas

    db = move.target_database
    move.tgt(
        replicas.heartbeat_ddl(db),
        f"INSERT INTO {replicas.TABLE} SELECT CONCAT('m', seq), 'target', NOW(6) FROM seq_1_to_2000",
        f"ANALYZE TABLE {replicas.TABLE}",
    )
    explainer.assert_uses_key("heartbeat read", replicas.heartbeat_read_sql(db), ["m7", replicas.SIDE])
    explainer.assert_uses_key(
        "heartbeat write", replicas.heartbeat_write_sql(db), ["m7", replicas.SIDE], writes_rows=True
    )


def test_checkpoint_statements_use_the_move_seq_key(move: MoveEnv, explainer: Explainer) -> None:
    """The newest row (ORDER BY seq DESC LIMIT 1; by id for rows of the earlier layout), the
    history and the prune of progress rows read the move's rows by key; the newest without a sort."""
    db = move.target_database
    move.tgt(cpstore.create_table_sql(db))
    # Many moves' rows (a move keeps few: progress rows are pruned), with rows of the earlier
    # layout (seq NULL) and owner rows among them.
    move.tgt(
        "INSERT INTO _tablemover_checkpoint (seq, move_name, state, kind, applied_gtid, progress, writer) "
        "SELECT IF(seq % 50 = 0, NULL, seq), IF(seq % 200 = 0, 'm', CONCAT('n', seq % 20)), 'COPYING', "
        "IF(seq % 7 = 0, 'owner', 'progress'), '0-1-1', '{}', 'w' FROM seq_1_to_6000",
        "ANALYZE TABLE _tablemover_checkpoint",
    )
    select = cpstore._select(db, True) + " AND kind <> 'owner'"
    explainer.assert_uses_key("newest", select + cpstore.NEWEST_FIRST + " LIMIT 1", ["m"])
    explainer.assert_uses_key(
        "newest, earlier layout", select + cpstore.EARLIER_NEWEST_FIRST + " LIMIT 1", ["m"]
    )
    _, plan = explainer.plan(select + cpstore.OLDEST_FIRST, ["m"])
    assert all(a["access_type"] not in ("ALL", "index") for a in _accesses(plan)), plan
    explainer.assert_uses_key("a move's rows here", cpstore.has_rows_sql(db), ["m"])
    _, plan = explainer.plan(cpstore.prune_sql(db), ["m", cpstore.KIND_PROGRESS, 5000])
    assert all(a["access_type"] not in ("ALL", "index") for a in _accesses(plan)), plan


@pytest.mark.parametrize("table", ["single", "comp2", "enum_middle"])
async def test_parallel_copy_reads_use_the_key(move: MoveEnv, explainer: Explainer, table: str) -> None:
    """A parallel copy's chunk read within a range of the first key column (copyplan.Span): an index
    range from the range's start, bounded at its end, without a sort, whatever the key after it;
    and the gate's statements for intervals within such a range."""
    db = move.target_database
    schema = await _schema(move, table)
    key_names = schema.chunk_key
    assert key_names is not None
    columns = _cols(schema, tuple(c.name for c in schema.writable_columns))
    key = _cols(schema, key_names)
    positions = [columns.index(k) for k in key]
    keys = [tuple(r[p] for p in positions) for r in _rows(move, schema)]
    firsts = sorted({k[0] for k in keys})
    lo, hi = firsts[len(firsts) // 4], firsts[len(firsts) // 2]
    after = next(k for k in keys if lo < k[0] <= hi)
    for span in ((lo, hi), (None, hi), (lo, None)):
        for start in (None, after):
            chunk = sql.select_chunk(db, table, columns, key, after=start, limit=50, span=span)
            explainer.assert_uses_key(f"chunk in {span} after {start}", chunk.text, chunk.args)
        # The gate trailing a parallel copy compares (after, last] within the span, the last
        # interval of a range open-ended: boundaries, checksums and row reads of those intervals.
        for low, high in ((None, after), (after, None), (None, None)):
            step = sql.key_boundary(db, table, key, after=low, upper=high, step=50, span=span)
            explainer.assert_uses_key(f"boundary in {span} ({low}, {high}]", step.text, step.args)
            for lock in (False, True):
                checksum = sql.checksum_range(
                    db, table, columns, key, lower=low, upper=high, span=span, lock=lock
                )
                explainer.assert_uses_key(f"checksum in {span} ({low}, {high}]", checksum.text, checksum.args)
            select = sql.select_range(db, table, columns, key, lower=low, upper=high, span=span)
            explainer.assert_uses_key(f"range read in {span} ({low}, {high}]", select.text, select.args)


def test_copy_range_statements_use_the_primary_key(move: MoveEnv, explainer: Explainer) -> None:
    """The parallel copy's progress rows (rangestore): read, appended and pruned by key."""
    from tablemover import rangestore

    db = move.target_database
    move.tgt(
        rangestore.create_table_sql(db),
        f"INSERT INTO {rangestore.TABLE} (move_name, table_name, range_no, seq, span, last_key, "
        "rows_copied, done, writer) SELECT CONCAT('m', seq % 40), CONCAT('t', seq % 3), seq % 16, seq, "
        "'{}', NULL, seq, 0, 'w' FROM seq_1_to_6000",
        f"ANALYZE TABLE {rangestore.TABLE}",
    )
    explainer.assert_uses_key("ranges of a move", rangestore.select_sql(db), ["m7"])
    _, plan = explainer.plan(rangestore.prune_sql(db), ["m7", "t1", 3, 5000])
    assert all(a["access_type"] not in ("ALL", "index") for a in _accesses(plan)), plan
    _, plan = explainer.plan(rangestore.delete_move_sql(db), ["m7"])
    assert all(a["access_type"] not in ("ALL", "index") for a in _accesses(plan)), plan
