"""NetPlan with keys that SQL finds equal and Python does not (case-insensitive collations).

'a', 'A' and 'a ' are one row in utf8mb4_general_ci but three keys to NetPlan. A table with one
unique index still writes its net changes in any order (deletes first): a binlog row image always
carries the key as stored, so among the spellings of one row only the one stored at the end of a
batch has an upsert as its last change, and every other spelling's last change is a delete. The
target model below compares keys case-insensitively and ignores trailing spaces, as the server
does.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.apply import NetPlan
from tablemover.changes import Op, RowChange
from tablemover.decode import RowDecoder
from tablemover.schema import Column, Index, TableSchema

SCHEMA = TableSchema(
    "app",
    "t",
    (
        Column("k", 0, "varchar", "varchar(10)", False, False, "utf8mb4"),
        Column("v", 1, "int", "int(11)", True, False, None),
    ),
    (Index("PRIMARY", ("k",), True, False),),
    "",
    (),
    (),
)
SPELLINGS = ["a", "A", "a ", "b", "B"]


def _sql_key(value: str) -> str:
    return value.rstrip(" ").casefold()


@given(
    st.lists(st.tuples(st.sampled_from(["upsert", "delete"]), st.sampled_from(SPELLINGS), st.integers(0, 9))),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_plan_for_a_case_insensitive_key_ends_like_the_source(
    ops: list[tuple[str, str, int]], commutative: bool
) -> None:
    plan = NetPlan({"t": RowDecoder(SCHEMA)}, frozenset({"t"}) if commutative else frozenset())
    source: dict[str, tuple[str, int]] = {}  # by SQL key: the row as stored
    for kind, spelling, v in ops:
        stored = source.get(_sql_key(spelling))
        if kind == "upsert":
            row = (spelling, v)  # an INSERT, or an UPDATE that may change the key's spelling
            plan.add(
                RowChange("t", Op.UPDATE, stored, row) if stored else RowChange("t", Op.INSERT, None, row)
            )
            source[_sql_key(spelling)] = row
        elif stored is not None:
            # DELETE ... WHERE k = <any spelling>: the row image holds the stored spelling.
            plan.add(RowChange("t", Op.DELETE, source.pop(_sql_key(spelling)), None))
    target: dict[str, Any] = {}
    for kind, _table, rows in plan.groups():
        for row in rows:
            if kind == "upsert":
                target[_sql_key(row[0])] = tuple(row)  # REPLACE: one row per SQL key
            else:
                target.pop(_sql_key(row[0]), None)
    assert target == source
