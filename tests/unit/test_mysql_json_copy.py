"""MySQL binary JSON on the copy path and the checksum gate (issue #21, point 3).

The copy reads a JSON column as text; on a MySQL source a DECIMAL, DATE, TIME, DATETIME or other
opaque value inside a document prints as a number or a string and would be written as one. The
chunk's read therefore asks the server, per row, for the JSON_TYPE() names in each document that
JSON text cannot carry, and the copy stops (exit 3) before the chunk is handed to the writer. No
MySQL server runs here: the SQL is tested as text, the refusal on a fake connection's rows.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tablemover import sql
from tablemover.changes import CopyChunk, WorkItem
from tablemover.checkpoint import TableProgress
from tablemover.copy import ChunkPlan, TableCopier
from tablemover.errors import UnreproducibleRow
from tablemover.schema import Column, Index, TableSchema
from tablemover.verify import _Chunk

ALLOWED = "'ARRAY', 'BOOLEAN', 'DOUBLE', 'INTEGER', 'NULL', 'OBJECT', 'STRING', 'UNSIGNED INTEGER'"
CHECK_DOC = (
    "(SELECT GROUP_CONCAT(DISTINCT JSON_TYPE(`_tm_jt`.`v`) ORDER BY JSON_TYPE(`_tm_jt`.`v`)) "
    "FROM JSON_TABLE(JSON_EXTRACT(`app`.`t`.`doc`, '$', '$**.*', '$**[*]'), '$[*]' "
    "COLUMNS (`v` JSON PATH '$')) AS `_tm_jt` WHERE JSON_TYPE(`_tm_jt`.`v`) NOT IN (" + ALLOWED + "))"
)


def test_check_expression_is_exact_text() -> None:
    assert sql.json_non_text_types("app", "t", "doc") == CHECK_DOC


def test_check_allows_only_the_types_json_text_reproduces() -> None:
    # An allow-list: DECIMAL, the temporal types, OPAQUE, BLOB, BIT, GEOMETRY and any name a later
    # MySQL adds are flagged because they are not listed, not because they are.
    assert set(sql.JSON_TEXT_TYPES) == {
        "ARRAY", "BOOLEAN", "DOUBLE", "INTEGER", "NULL", "OBJECT", "STRING", "UNSIGNED INTEGER",
    }  # fmt: skip
    for name in ("DECIMAL", "DATE", "TIME", "DATETIME", "TIMESTAMP", "OPAQUE", "BLOB", "BIT", "GEOMETRY"):
        assert f"'{name}'" not in CHECK_DOC


def test_check_covers_the_top_level_value_and_every_nested_one() -> None:
    # '$' is the document itself (a lone DATETIME scalar), the wildcards every member and element.
    assert "JSON_EXTRACT(`app`.`t`.`doc`, '$', '$**.*', '$**[*]')" in CHECK_DOC
    # The outer row's column is named with its table, so JSON_TABLE's own `v` cannot shadow it.
    assert "`app`.`t`.`doc`" in sql.json_non_text_types("app", "t", "doc")
    assert "`a``b`.`t`.`d``c`" in sql.json_non_text_types("a`b", "t", "d`c")


def test_select_chunk_appends_one_check_per_json_column_and_keeps_the_range() -> None:
    plain = sql.select_chunk("app", "t", ["id", "doc", "j2"], ["id"], after=(5,), limit=10)
    checked = sql.select_chunk(
        "app", "t", ["id", "doc", "j2"], ["id"], after=(5,), limit=10, json_checks=["doc", "j2"]
    )
    check_j2 = sql.json_non_text_types("app", "t", "j2")
    assert checked.text == plain.text.replace(
        "SELECT `id`, `doc`, `j2` FROM", f"SELECT `id`, `doc`, `j2`, {CHECK_DOC}, {check_j2} FROM"
    )
    assert checked.args == plain.args == [5]
    # Still one locked key-range read of the table: no other table, no scan of its own.
    assert checked.text.endswith("WHERE ((`id` > %s)) ORDER BY `id` LIMIT 10 LOCK IN SHARE MODE")
    assert checked.text.count("FROM `app`.`t`") == 1


def test_checksum_range_counts_flagged_rows_only_when_asked() -> None:
    plain = sql.checksum_range("app", "t", ["id", "doc"], ["id"], lower=(1,), upper=(9,))
    checked = sql.checksum_range(
        "app", "t", ["id", "doc"], ["id"], lower=(1,), upper=(9,), json_checks=["doc"]
    )
    # The flag is computed beside the digest in the derived table and counted outside it.
    assert checked.text == plain.text.replace(
        " AS `_tm_h` FROM `app`.`t`", f" AS `_tm_h`, COALESCE({CHECK_DOC}, NULL) AS `_tm_f` FROM `app`.`t`"
    ).replace(", 0) FROM (SELECT", ", 0), COUNT(`_tm_f`) FROM (SELECT")
    assert checked.args == plain.args


# --------------------------------------------------------------------------- the copier


def _column(name: str, ordinal: int, data_type: str) -> Column:
    return Column(name, ordinal, data_type, data_type, nullable=False, generated=False, charset=None)


def _schema(doc_type: str) -> TableSchema:
    return TableSchema(
        database="app",
        name="t",
        columns=(_column("id", 0, "int"), _column("doc", 1, doc_type), _column("note", 2, "varchar")),
        indexes=(Index("PRIMARY", ("id",), True, False),),
        create_statement="",
        foreign_keys=(),
        triggers=(),
    )


class _Cursor:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def execute(self, text: str, args: Any) -> int:
        self.conn.statements.append(text)
        return 0

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return self.conn.rows


class _Conn:
    """The source connection as the copier uses it: begin, one SELECT, rollback."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.statements: list[str] = []
        self.rolled_back = 0

    async def begin(self) -> None:
        return None

    async def rollback(self) -> None:
        self.rolled_back += 1

    def cursor(self) -> _Cursor:
        return _Cursor(self)


async def _read(
    doc_type: str, rows: list[tuple[Any, ...]]
) -> tuple[_Conn, list[WorkItem], BaseException | None]:
    conn = _Conn(rows)
    send, recv = anyio.create_memory_object_stream[WorkItem](10)

    async def allowed() -> None:
        return None

    copier = TableCopier([conn], _schema(doc_type), TableProgress(), 100, send, allowed)
    error: BaseException | None = None
    try:
        await copier._read_chunk(conn, ChunkPlan(None, 100))
    except UnreproducibleRow as exc:
        error = exc
    send.close()
    received = [item async for item in recv]
    return conn, received, error


def test_a_flagged_row_stops_the_copy_before_the_writer_gets_the_chunk() -> None:
    rows = [
        (1, '{"a": 1}', "x", None),
        (2, '{"when": "2024-01-02 03:04:05.000000"}', "y", b"DATETIME"),  # what the server flags
        (3, "[1.5]", "z", None),
    ]
    conn, received, error = anyio.run(_read, "json", rows)
    assert isinstance(error, UnreproducibleRow)
    assert error.exit_code == 3 and error.dooms_move
    assert (error.table, error.column, error.key) == ("app.t", "doc", "id=2")
    text = str(error)
    for needed in ("app.t", "id=2", "column doc", "DATETIME", "Nothing of the chunk", "discard"):
        assert needed in text
    assert received == []  # nothing reached the writer
    assert conn.rolled_back == 1  # the chunk's shared locks were released
    assert conn.statements and CHECK_DOC in conn.statements[0]


def test_unflagged_rows_reach_the_writer_without_the_check_column() -> None:
    rows = [(1, '{"a": 1}', "x", None), (2, "[1.5, null]", "y", None)]
    conn, received, error = anyio.run(_read, "json", rows)
    assert error is None
    assert len(received) == 1 and isinstance(received[0], CopyChunk)
    assert received[0].rows == [(1, '{"a": 1}', "x"), (2, "[1.5, null]", "y")]
    assert received[0].last_key == (2,)
    assert conn.rolled_back == 0  # still locked until the writer commits


def test_mariadb_json_is_text_and_is_not_checked() -> None:
    # MariaDB's JSON is LONGTEXT (information_schema says 'longtext'): no check, no extra column.
    rows = [(1, '{"a": 1}', "x")]
    conn, received, error = anyio.run(_read, "longtext", rows)
    assert error is None and received[0].rows == rows  # type: ignore[union-attr]
    assert "JSON_TABLE" not in conn.statements[0]


# --------------------------------------------------------------------------- the checksum gate


def _chunk(json_checks: tuple[str, ...]) -> _Chunk:
    stmt = sql.Statement("", [])
    return _Chunk(
        None, None, stmt, stmt, stmt, stmt, [0], [sql.Col("id")], "app.t", json_checks, "(1,) and (9,)"
    )


def test_gate_refuses_a_chunk_with_flagged_rows() -> None:
    with pytest.raises(UnreproducibleRow) as caught:
        _chunk(("doc",)).source_sum((10, 123, 456, 2))
    assert caught.value.exit_code == 3
    assert "2 row(s) of app.t" in str(caught.value) and "nothing is renamed" in str(caught.value)


def test_gate_compares_the_three_sums_when_nothing_is_flagged() -> None:
    assert _chunk(("doc",)).source_sum((10, 123, 456, 0)) == (10, 123, 456)
    assert _chunk(()).source_sum((10, 123, 456)) == (10, 123, 456)
