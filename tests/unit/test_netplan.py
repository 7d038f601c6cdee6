"""Unit tests for NetPlan (tablemover.apply): folding binlog row changes into their net effect.

The writer applies a batch of changes as ``NetPlan.groups()``: REPLACE of full rows ("upsert") and
DELETE by chunk key ("delete"). The properties below replay random, source-valid change sequences
against a dict model of the source, apply the plan's groups to a model of the target with MySQL's
REPLACE semantics, and require both to end equal.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.apply import NetPlan
from tablemover.changes import Op, Row, RowChange
from tablemover.decode import RowDecoder
from tablemover.schema import Column, Index, TableSchema

FAST = settings(max_examples=100, deadline=None)


# --------------------------------------------------------------------------- schema helpers


def col(name: str, ordinal: int, *, nullable: bool = False, generated: bool = False) -> Column:
    return Column(
        name=name,
        ordinal=ordinal,
        data_type="int",
        column_type="int(11)",
        nullable=nullable,
        generated=generated,
        charset=None,
    )


def table(name: str, columns: list[Column], indexes: list[Index]) -> TableSchema:
    return TableSchema(
        database="app",
        name=name,
        columns=tuple(columns),
        indexes=tuple(indexes),
        create_statement="",
        foreign_keys=(),
        triggers=(),
    )


# "pk": PRIMARY KEY (id); a generated column first so writable positions differ from ordinals.
PK_SCHEMA = table(
    "pk",
    [col("g", 0, generated=True), col("id", 1), col("v", 2)],
    [Index("PRIMARY", ("id",), True, False)],
)
# "cpk": composite PRIMARY KEY (a, b).
CPK_SCHEMA = table(
    "cpk",
    [col("a", 0), col("b", 1), col("v", 2)],
    [Index("PRIMARY", ("a", "b"), True, False)],
)
# "uq": PRIMARY KEY (id) plus UNIQUE (u) over a nullable column.
UQ_SCHEMA = table(
    "uq",
    [col("id", 0), col("u", 1, nullable=True), col("v", 2)],
    [Index("PRIMARY", ("id",), True, False), Index("u", ("u",), True, False)],
)

DECODERS = {s.name: RowDecoder(s) for s in (PK_SCHEMA, CPK_SCHEMA, UQ_SCHEMA)}
COMMUTATIVE = frozenset({"pk", "cpk"})


def plan_for(changes: list[RowChange], commutative: frozenset[str] = COMMUTATIVE) -> NetPlan:
    plan = NetPlan(DECODERS, commutative)
    for change in changes:
        plan.add(change)
    return plan


def key_of(table_name: str, row: Row) -> tuple[Any, ...]:
    return DECODERS[table_name].key(row)


# --------------------------------------------------------------------------- target model


Model = dict[tuple[Any, ...], Row]


def replace_into(model: Model, row: Row, secondary: int | None) -> None:
    """MySQL REPLACE: delete every row colliding on the PK or on a unique secondary, then insert."""
    key = (row[0],)
    for other_key, other in list(model.items()):
        collides = other_key == key or (
            secondary is not None and row[secondary] is not None and other[secondary] == row[secondary]
        )
        if collides:
            del model[other_key]
    model[key] = row


def apply_groups(models: dict[str, Model], plan: NetPlan, secondary: dict[str, int | None]) -> None:
    for kind, table_name, payloads in plan.groups():
        model = models[table_name]
        for payload in payloads:
            if kind == "upsert":
                if table_name == "cpk":
                    model[key_of("cpk", payload)] = payload
                else:
                    replace_into(model, payload, secondary[table_name])
            else:
                assert kind == "delete", kind
                model.pop(tuple(payload), None)


# --------------------------------------------------------------------------- source change generators


def step_pk(
    data: st.DataObject, model: Model, table_name: str, keys: st.SearchStrategy[Any]
) -> RowChange | None:
    """One random change valid on a source table whose only unique index is its key."""

    def make(key: tuple[Any, ...], value: int) -> Row:
        if table_name == "cpk":
            return (*key, value)
        return (key[0], value)

    op = data.draw(st.sampled_from(["insert", "update", "update_key", "delete"]))
    value = data.draw(st.integers(0, 3))
    if op == "insert":
        key = data.draw(keys)
        if key in model:
            return None
        row = make(key, value)
        model[key] = row
        return RowChange(table_name, Op.INSERT, None, row)
    if not model:
        return None
    old_key = data.draw(st.sampled_from(sorted(model)))
    before = model[old_key]
    if op == "delete":
        del model[old_key]
        return RowChange(table_name, Op.DELETE, before, None)
    if op == "update":
        after = make(old_key, value)
        model[old_key] = after
        return RowChange(table_name, Op.UPDATE, before, after)
    new_key = data.draw(keys)
    if new_key in model and new_key != old_key:
        return None
    after = make(new_key, value)
    del model[old_key]
    model[new_key] = after
    return RowChange(table_name, Op.UPDATE, before, after)


PK_KEYS = st.tuples(st.integers(0, 6))
CPK_KEYS = st.tuples(st.integers(0, 2), st.integers(0, 2))


def initial_pk_model(data: st.DataObject, table_name: str, keys: st.SearchStrategy[Any]) -> Model:
    model: Model = {}
    for key in data.draw(st.lists(keys, max_size=6)):
        value = data.draw(st.integers(0, 3))
        model[key] = (*key, value) if table_name == "cpk" else (key[0], value)
    return model


@given(st.data())
@FAST
def test_single_key_table_net_effect_equals_sequential(data: st.DataObject) -> None:
    source = {"pk": initial_pk_model(data, "pk", PK_KEYS), "cpk": initial_pk_model(data, "cpk", CPK_KEYS)}
    target = {t: dict(m) for t, m in source.items()}
    changes: list[RowChange] = []
    for _ in range(data.draw(st.integers(0, 20))):
        table_name = data.draw(st.sampled_from(["pk", "cpk"]))
        keys = PK_KEYS if table_name == "pk" else CPK_KEYS
        change = step_pk(data, source[table_name], table_name, keys)
        if change is not None:
            changes.append(change)
    plan = plan_for(changes)
    apply_groups(target, plan, {"pk": None, "cpk": None})
    assert target == source


def uq_valid(model: Model) -> bool:
    seen = [row[1] for row in model.values() if row[1] is not None]
    return len(seen) == len(set(seen))


def step_uq(data: st.DataObject, model: Model) -> RowChange | None:
    """One random change on the "uq" table that the source would accept (no duplicate ``u``)."""
    op = data.draw(st.sampled_from(["insert", "update", "update_key", "delete"]))
    u = data.draw(st.none() | st.integers(0, 3))
    v = data.draw(st.integers(0, 2))
    trial = dict(model)
    if op == "insert":
        key = data.draw(PK_KEYS)
        if key in trial:
            return None
        change = RowChange("uq", Op.INSERT, None, (key[0], u, v))
        trial[key] = (key[0], u, v)
    else:
        if not trial:
            return None
        old_key = data.draw(st.sampled_from(sorted(trial)))
        before = trial.pop(old_key)
        if op == "delete":
            change = RowChange("uq", Op.DELETE, before, None)
        else:
            new_key = data.draw(PK_KEYS) if op == "update_key" else old_key
            if new_key in trial:
                return None
            after = (new_key[0], u, v)
            trial[new_key] = after
            change = RowChange("uq", Op.UPDATE, before, after)
    if not uq_valid(trial):
        return None
    model.clear()
    model.update(trial)
    return change


def initial_uq_model(data: st.DataObject) -> Model:
    model: Model = {}
    for key in data.draw(st.lists(PK_KEYS, max_size=6)):
        row = (key[0], data.draw(st.none() | st.integers(0, 3)), data.draw(st.integers(0, 2)))
        trial = {**model, key: row}
        if uq_valid(trial):
            model = trial
    return model


@given(st.data())
@FAST
def test_secondary_unique_table_net_effect_equals_sequential(data: st.DataObject) -> None:
    source = {"uq": initial_uq_model(data)}
    target = {"uq": dict(source["uq"])}
    changes: list[RowChange] = []
    for _ in range(data.draw(st.integers(0, 20))):
        change = step_uq(data, source["uq"])
        if change is not None:
            changes.append(change)
    plan = plan_for(changes)
    assert "uq" not in COMMUTATIVE
    apply_groups(target, plan, {"uq": 1})
    assert target == source


@given(st.data())
@FAST
def test_mixed_tables_net_effect_equals_sequential(data: st.DataObject) -> None:
    source = {
        "pk": initial_pk_model(data, "pk", PK_KEYS),
        "cpk": initial_pk_model(data, "cpk", CPK_KEYS),
        "uq": initial_uq_model(data),
    }
    target = {t: dict(m) for t, m in source.items()}
    changes: list[RowChange] = []
    for _ in range(data.draw(st.integers(0, 20))):
        table_name = data.draw(st.sampled_from(["pk", "cpk", "uq"]))
        if table_name == "uq":
            change = step_uq(data, source["uq"])
        else:
            keys = PK_KEYS if table_name == "pk" else CPK_KEYS
            change = step_pk(data, source[table_name], table_name, keys)
        if change is not None:
            changes.append(change)
    apply_groups(target, plan_for(changes), {"pk": None, "cpk": None, "uq": 1})
    assert target == source


# --------------------------------------------------------------------------- examples


def ins(table_name: str, row: Row) -> RowChange:
    return RowChange(table_name, Op.INSERT, None, row)


def upd(table_name: str, before: Row, after: Row) -> RowChange:
    return RowChange(table_name, Op.UPDATE, before, after)


def dele(table_name: str, row: Row) -> RowChange:
    return RowChange(table_name, Op.DELETE, row, None)


def test_empty_plan_yields_nothing() -> None:
    plan = plan_for([])
    assert len(plan) == 0
    assert list(plan.groups()) == []


def test_commutative_deletes_before_upserts_one_group_per_kind_and_table() -> None:
    plan = plan_for(
        [
            ins("pk", (1, 10)),
            dele("pk", (2, 20)),
            ins("cpk", (0, 0, 1)),
            ins("pk", (3, 30)),
            dele("cpk", (1, 1, 0)),
            dele("pk", (4, 40)),
            ins("cpk", (2, 2, 2)),
        ]
    )
    groups = list(plan.groups())
    assert groups == [
        ("delete", "pk", [(2,), (4,)]),
        ("delete", "cpk", [(1, 1)]),
        ("upsert", "pk", [(1, 10), (3, 30)]),
        ("upsert", "cpk", [(0, 0, 1), (2, 2, 2)]),
    ]
    kinds = [kind for kind, _, _ in groups]
    assert kinds.index("upsert") > max(i for i, k in enumerate(kinds) if k == "delete")
    pairs = [(kind, t) for kind, t, _ in groups]
    assert len(pairs) == len(set(pairs))


def test_key_changing_update_is_delete_old_plus_upsert_new() -> None:
    plan = plan_for([upd("pk", (1, 10), (2, 10))])
    assert list(plan.groups()) == [("delete", "pk", [(1,)]), ("upsert", "pk", [(2, 10)])]


def test_key_changing_update_composite_key() -> None:
    plan = plan_for([upd("cpk", (0, 1, 5), (1, 0, 5))])
    assert list(plan.groups()) == [("delete", "cpk", [(0, 1)]), ("upsert", "cpk", [(1, 0, 5)])]


def test_same_key_update_is_a_single_upsert() -> None:
    plan = plan_for([upd("pk", (1, 10), (1, 11))])
    assert list(plan.groups()) == [("upsert", "pk", [(1, 11)])]


def test_two_changes_to_one_key_collapse_to_the_last() -> None:
    plan = plan_for([ins("pk", (1, 10)), upd("pk", (1, 10), (1, 11)), upd("pk", (1, 11), (1, 12))])
    assert len(plan) == 1
    assert list(plan.groups()) == [("upsert", "pk", [(1, 12)])]


def test_insert_then_delete_collapses_to_delete() -> None:
    plan = plan_for([ins("pk", (1, 10)), dele("pk", (1, 10))])
    assert list(plan.groups()) == [("delete", "pk", [(1,)])]


def test_delete_then_insert_collapses_to_upsert() -> None:
    plan = plan_for([dele("pk", (1, 10)), ins("pk", (1, 99))])
    assert list(plan.groups()) == [("upsert", "pk", [(1, 99)])]


def test_key_moved_away_and_back() -> None:
    plan = plan_for([upd("pk", (1, 10), (2, 10)), upd("pk", (2, 10), (1, 11))])
    assert list(plan.groups()) == [("delete", "pk", [(2,)]), ("upsert", "pk", [(1, 11)])]


def test_decoder_key_skips_generated_columns() -> None:
    # PK_SCHEMA's writable row is (id, v): the generated column g is not part of it.
    assert DECODERS["pk"].key((5, 50)) == (5,)
    assert DECODERS["cpk"].key((1, 2, 3)) == (1, 2)


def test_secondary_unique_table_is_two_statements_whatever_moves() -> None:
    # Row 1 gives up u=7 (moves to 8), then row 2 takes u=7: after the DELETE of both keys the
    # final images cannot collide, in either order.
    plan = plan_for([upd("uq", (1, 7, 0), (1, 8, 0)), ins("uq", (2, 7, 0))])
    assert list(plan.groups()) == [("delete", "uq", [(1,), (2,)]), ("upsert", "uq", [(1, 8, 0), (2, 7, 0)])]
    plan = plan_for(
        [
            ins("uq", (3, None, 0)),
            dele("uq", (1, 7, 0)),
            ins("uq", (2, 7, 0)),
            upd("uq", (3, None, 0), (3, 1, 1)),
        ]
    )
    assert list(plan.groups()) == [
        ("delete", "uq", [(1,), (2,), (3,)]),
        ("upsert", "uq", [(2, 7, 0), (3, 1, 1)]),
    ]


def test_alternating_changes_are_not_one_statement_each() -> None:
    plan = plan_for(
        [ins("uq", (1, 1, 0)), dele("uq", (2, 2, 0)), ins("uq", (3, 3, 0)), dele("uq", (4, 4, 0))]
    )
    assert list(plan.groups()) == [
        ("delete", "uq", [(1,), (2,), (3,), (4,)]),
        ("upsert", "uq", [(1, 1, 0), (3, 3, 0)]),
    ]


def test_deletes_of_every_table_come_before_upserts() -> None:
    plan = plan_for([ins("uq", (1, 1, 0)), ins("pk", (1, 1)), dele("pk", (2, 2))])
    assert list(plan.groups()) == [
        ("delete", "uq", [(1,)]),
        ("delete", "pk", [(2,)]),
        ("upsert", "uq", [(1, 1, 0)]),
        ("upsert", "pk", [(1, 1)]),
    ]


def test_same_key_in_two_tables_is_two_entries() -> None:
    plan = plan_for([ins("pk", (1, 1)), ins("uq", (1, None, 0))])
    assert len(plan) == 2
