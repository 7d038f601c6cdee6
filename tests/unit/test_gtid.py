"""Tests for tablemover.gtid: parsing, canonical text, and the drain decision."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover.flavor import Flavor
from tablemover.gtid import (
    GtidPosition,
    MariaDBGtid,
    MariaDBPosition,
    MySQLGtidSet,
    advance,
    covers,
    parse_position,
)

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4e11fa47-71ca-11e1-9e33-c80aa9429562"
U3 = "ffffffff-0000-0000-0000-000000000001"

# Small pools keep hypothesis examples overlapping, which is where merging bugs hide.
SMALL = settings(max_examples=60, deadline=None)


# =========================================================================== MariaDB GTID


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-1-5", MariaDBGtid(0, 1, 5)),
        (" 1-2-3\n", MariaDBGtid(1, 2, 3)),
        ("4294967295-4294967295-18446744073709551615", MariaDBGtid(2**32 - 1, 2**32 - 1, 2**64 - 1)),
        ("0-0-0", MariaDBGtid(0, 0, 0)),
    ],
)
def test_mariadb_gtid_parse(text: str, expected: MariaDBGtid) -> None:
    assert MariaDBGtid.parse(text) == expected


def test_mariadb_gtid_str() -> None:
    assert str(MariaDBGtid(0, 1, 5)) == "0-1-5"
    assert str(MariaDBGtid.parse("007-01-5")) == "7-1-5"


@pytest.mark.parametrize(
    "text",
    ["", "0-1", "0-1-5-6", "a-1-5", "0-1-", "-1-5", "0--1-5", "0-1-5,", f"{U1}:5", "0 -1-5", "0-1-x"],
)
def test_mariadb_gtid_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed MariaDB GTID"):
        MariaDBGtid.parse(text)


@pytest.mark.parametrize(
    ("text", "field"),
    [("4294967296-1-1", "domain"), ("0-4294967296-1", "server_id"), ("0-1-18446744073709551616", "seq")],
)
def test_mariadb_gtid_out_of_range(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} .* out of range"):
        MariaDBGtid.parse(text)


# =========================================================================== MariaDB position


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("   ", ""),
        ("\n", ""),
        ("0-1-5", "0-1-5"),
        ("0-1-5,1-2-7", "0-1-5,1-2-7"),
        ("1-2-7,0-1-5", "0-1-5,1-2-7"),
        ("0-1-5 , 1-2-7", "0-1-5,1-2-7"),
        ("0-1-5,\n1-2-7\n", "0-1-5,1-2-7"),
        ("10-1-1,2-1-1,1-1-1", "1-1-1,2-1-1,10-1-1"),
        # Duplicate domain: the higher seq wins regardless of order.
        ("0-1-5,0-2-9", "0-2-9"),
        ("0-2-9,0-1-5", "0-2-9"),
        ("0-1-5,1-1-3,0-1-4", "0-1-5,1-1-3"),
        # Equal seq: the later entry wins (it names the current server_id).
        ("0-1-5,0-2-5", "0-2-5"),
    ],
)
def test_mariadb_position_parse_canonical(text: str, canonical: str) -> None:
    position = MariaDBPosition.parse(text)
    assert str(position) == canonical
    assert MariaDBPosition.parse(canonical) == position


@pytest.mark.parametrize("text", ["0-1-5,", ",0-1-5", "0-1-5,,1-2-7", "0-1-5;1-2-7", "garbage"])
def test_mariadb_position_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed MariaDB GTID"):
        MariaDBPosition.parse(text)


def test_mariadb_position_accessors() -> None:
    position = MariaDBPosition.parse("3-1-9,0-1-5")
    assert position.domains == (0, 3)
    assert position.get(3) == MariaDBGtid(3, 1, 9)
    assert position.get(1) is None
    assert not position.is_empty
    assert MariaDBPosition.parse("").is_empty
    assert MariaDBPosition().domains == ()
    assert position.flavor is Flavor.MARIADB


def test_mariadb_position_is_immutable_and_hashable() -> None:
    position = MariaDBPosition.parse("0-1-5")
    with pytest.raises(AttributeError):
        position.gtids = ()  # type: ignore[misc]
    assert hash(position) == hash(MariaDBPosition.parse(" 0-1-5 "))
    assert {position, MariaDBPosition.parse("0-1-5")} == {position}


def test_mariadb_constructor_normalises() -> None:
    position = MariaDBPosition((MariaDBGtid(2, 1, 1), MariaDBGtid(0, 1, 9), MariaDBGtid(0, 1, 3)))
    assert str(position) == "0-1-9,2-1-1"


@pytest.mark.parametrize(
    ("start", "gtid", "expected"),
    [
        ("", "0-1-1", "0-1-1"),
        ("0-1-5", "0-1-6", "0-1-6"),
        ("0-1-5", "1-1-1", "0-1-5,1-1-1"),
        ("0-1-5,1-1-1", "1-1-2", "0-1-5,1-1-2"),
        # Never backwards within a domain.
        ("0-1-5", "0-1-4", "0-1-5"),
        ("0-1-5", "0-2-4", "0-1-5"),
        # Failover: server_id changes, seq keeps counting.
        ("0-1-5", "0-2-6", "0-2-6"),
        ("0-1-5", "0-2-5", "0-2-5"),
    ],
)
def test_mariadb_advance(start: str, gtid: str, expected: str) -> None:
    position = MariaDBPosition.parse(start)
    assert str(position.advance(MariaDBGtid.parse(gtid))) == expected
    assert str(advance(position, gtid)) == expected
    # The original value is untouched.
    assert str(position) == str(MariaDBPosition.parse(start))


@pytest.mark.parametrize(
    ("applied", "target", "expected"),
    [
        ("", "", True),
        ("0-1-5", "", True),
        ("", "0-1-5", False),
        ("0-1-5", "0-1-5", True),
        ("0-1-6", "0-1-5", True),
        ("0-1-4", "0-1-5", False),
        # server_id is ignored: a failover renames the writer, not the counter.
        ("0-2-7", "0-1-5", True),
        ("0-2-4", "0-1-5", False),
        # Multi-domain: every domain of the target must be reached.
        ("0-1-10,1-1-3", "0-1-5,1-1-3", True),
        ("0-1-10,1-1-2", "0-1-5,1-1-3", False),
        ("0-1-4,1-1-9", "0-1-5,1-1-3", False),
        ("0-1-10", "0-1-5,1-1-3", False),
        # Extra domains on the applied side are irrelevant.
        ("0-1-10,1-1-3,2-1-1", "0-1-5", True),
        ("1-1-3", "0-1-0", False),
    ],
)
def test_mariadb_covers(applied: str, target: str, expected: bool) -> None:
    a = MariaDBPosition.parse(applied)
    t = MariaDBPosition.parse(target)
    assert a.covers(t) is expected
    assert covers(a, t) is expected


# =========================================================================== MySQL GTID sets


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        (" \n ", ""),
        (f"{U1}:1", f"{U1}:1"),
        (f"{U1}:1-1", f"{U1}:1"),
        (f"{U1}:1-5", f"{U1}:1-5"),
        (f"{U1}:1-5:7-9", f"{U1}:1-5:7-9"),
        # Case folding.
        (f"{U1.upper()}:1-5", f"{U1}:1-5"),
        # The example from the MySQL manual, with the newline gtid_executed uses.
        (
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7-9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1",
            f"{U1}:1-5:7-9,{U2}:1",
        ),
        # UUID order.
        (f"{U2}:1,{U1}:2", f"{U1}:2,{U2}:1"),
        # Touching and overlapping intervals merge; order within an entry does not matter.
        (f"{U1}:1-3:4-5", f"{U1}:1-5"),
        (f"{U1}:4-5:1-3", f"{U1}:1-5"),
        (f"{U1}:1-5:3-9", f"{U1}:1-9"),
        (f"{U1}:1-9:3-4", f"{U1}:1-9"),
        (f"{U1}:1:2:3:5", f"{U1}:1-3:5"),
        (f"{U1}:7-9:1-5", f"{U1}:1-5:7-9"),
        # Duplicate UUID entries merge.
        (f"{U1}:1-3,{U2}:1,{U1}:4-6", f"{U1}:1-6,{U2}:1"),
        (f"{U1}:1-3,{U1}:1-3", f"{U1}:1-3"),
        # Whitespace around separators.
        (f" {U1} : 1 - 3 : 5 ,\n {U2}:2 ", f"{U1}:1-3:5,{U2}:2"),
        # Tagged GTIDs: a tag applies to the intervals after it.
        (f"{U1}:tag1:1-5", f"{U1}:tag1:1-5"),
        (f"{U1}:1-3:tag1:5-7", f"{U1}:1-3:tag1:5-7"),
        (f"{U1}:1-5:mytag:1-3", f"{U1}:1-5:mytag:1-3"),
        (f"{U1}:tag1:5-7:1-2", f"{U1}:tag1:1-2:5-7"),
        (f"{U1}:TAG1:5", f"{U1}:tag1:5"),
        (f"{U1}:b:1:a:2", f"{U1}:a:2:b:1"),
        (f"{U1}:b:1,{U1}:3,{U1}:a:2", f"{U1}:3:a:2:b:1"),
        (f"{U1}:t:1-2:u:1:t:3-4", f"{U1}:t:1-4:u:1"),
        (f"{U1}:_x9:1", f"{U1}:_x9:1"),
        (f"{U2}:t:1,{U1}:2", f"{U1}:2,{U2}:t:1"),
        (f"{U1}:t:1,{U2}:1", f"{U1}:t:1,{U2}:1"),
        (f"{U1}:{'a' * 32}:1", f"{U1}:{'a' * 32}:1"),
        # The largest transaction number MySQL accepts.
        (f"{U1}:9223372036854775806", f"{U1}:9223372036854775806"),
    ],
)
def test_mysql_parse_canonical(text: str, canonical: str) -> None:
    gtid_set = MySQLGtidSet.parse(text)
    assert str(gtid_set) == canonical
    assert MySQLGtidSet.parse(canonical) == gtid_set
    assert hash(MySQLGtidSet.parse(canonical)) == hash(gtid_set)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage", "'garbage' is not a server UUID"),
        ("3e11fa47-71ca-11e1-9e33:1", "is not a server UUID"),
        ("3e11fa47-71ca-11e1-9e33-c80aa942956g:1", "is not a server UUID"),
        (f"{U1}", "has no intervals"),
        (f"{U1}:", "neither an interval nor a tag"),
        (f"{U1}:5-3", "interval 5-3 ends before it starts"),
        (f"{U1}:0", "transaction number 0 is not allowed"),
        (f"{U1}:0-5", "transaction number 0 is not allowed"),
        (f"{U1}:9223372036854775807", "exceeds"),
        (f"{U1}:1-5,", "empty entry"),
        (f",{U1}:1-5", "empty entry"),
        (f"{U1}:1-5,,{U2}:1", "empty entry"),
        (f"{U1}:1-5:x-y", "neither an interval nor a tag"),
        (f"{U1}:1-", "neither an interval nor a tag"),
        (f"{U1}:-1", "neither an interval nor a tag"),
        (f"{U1}:1-2-3", "neither an interval nor a tag"),
        (f"{U1}:9tag:1", "neither an interval nor a tag"),
        (f"{U1}:{'a' * 33}:1", "neither an interval nor a tag"),
        (f"{U1}:tag", "tag 'tag' has no intervals"),
        (f"{U1}:1:tag", "tag 'tag' has no intervals"),
        (f"{U1}:a:b:1", "tag 'a' has no intervals"),
        (f"{U1}:1;{U2}:1", "neither an interval nor a tag"),
        ("0-1-5", "is not a server UUID"),
    ],
)
def test_mysql_parse_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid GTID set") as excinfo:
        MySQLGtidSet.parse(text)
    assert message in str(excinfo.value)


def test_mysql_accessors() -> None:
    gtid_set = MySQLGtidSet.parse(f"{U2}:1,{U1}:1-5:7-9:t:3")
    assert gtid_set.sources == (U1, f"{U1}:t", U2)
    assert gtid_set.intervals(U1) == ((1, 5), (7, 9))
    assert gtid_set.intervals(U1.upper()) == ((1, 5), (7, 9))
    assert gtid_set.intervals(f"{U1}:t") == ((3, 3),)
    assert gtid_set.intervals(U3) == ()
    assert gtid_set.flavor is Flavor.MYSQL
    assert not gtid_set.is_empty
    assert MySQLGtidSet.parse("").is_empty
    assert MySQLGtidSet() == MySQLGtidSet.parse("")


def test_mysql_constructor_normalises_and_validates() -> None:
    built = MySQLGtidSet(((U2, ((1, 1),)), (U1.upper(), ((4, 5), (1, 3))), (f"{U1}:T", ((2, 2),)), (U3, ())))
    assert str(built) == f"{U1}:1-5:t:2,{U2}:1"
    with pytest.raises(ValueError, match="ends before it starts"):
        MySQLGtidSet(((U1, ((5, 3),)),))
    with pytest.raises(ValueError, match="not a server UUID"):
        MySQLGtidSet((("nope", ((1, 1),)),))
    with pytest.raises(ValueError, match="neither an interval nor a tag"):
        MySQLGtidSet(((f"{U1}:bad-tag", ((1, 1),)),))


def test_mysql_is_immutable() -> None:
    gtid_set = MySQLGtidSet.parse(f"{U1}:1")
    with pytest.raises(AttributeError):
        gtid_set.entries = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", ""),
        (f"{U1}:1-3", "", f"{U1}:1-3"),
        (f"{U1}:1-3", f"{U1}:4-6", f"{U1}:1-6"),
        (f"{U1}:1-3", f"{U1}:5-6", f"{U1}:1-3:5-6"),
        (f"{U1}:1-3:7", f"{U1}:2-8", f"{U1}:1-8"),
        (f"{U1}:1-3", f"{U2}:1", f"{U1}:1-3,{U2}:1"),
        (f"{U1}:1-3", f"{U1}:t:1-3", f"{U1}:1-3:t:1-3"),
    ],
)
def test_mysql_union(a: str, b: str, expected: str) -> None:
    sa, sb = MySQLGtidSet.parse(a), MySQLGtidSet.parse(b)
    assert str(sa.union(sb)) == expected
    assert str(sb.union(sa)) == expected


@pytest.mark.parametrize(
    ("start", "gtid", "expected"),
    [
        ("", f"{U1}:1", f"{U1}:1"),
        (f"{U1}:1-5", f"{U1}:6", f"{U1}:1-6"),
        (f"{U1}:1-5:7-9", f"{U1}:6", f"{U1}:1-9"),
        (f"{U1}:1-5", f"{U1}:3", f"{U1}:1-5"),
        (f"{U1}:1-5", f"{U1}:8", f"{U1}:1-5:8"),
        (f"{U1}:2-5", f"{U1}:1", f"{U1}:1-5"),
        (f"{U1}:1-5", f"{U2.upper()}:1", f"{U1}:1-5,{U2}:1"),
        (f"{U1}:1-5", f"{U1}:tag:42", f"{U1}:1-5:tag:42"),
        (f"{U1}:1-5:tag:41", f"{U1}:TAG:42", f"{U1}:1-5:tag:41-42"),
        (f"{U1}:1-5", f" {U1} : 6 ", f"{U1}:1-6"),
    ],
)
def test_mysql_add(start: str, gtid: str, expected: str) -> None:
    gtid_set = MySQLGtidSet.parse(start)
    assert str(gtid_set.add(gtid)) == expected
    assert str(advance(gtid_set, gtid)) == expected
    assert str(gtid_set) == str(MySQLGtidSet.parse(start))


@pytest.mark.parametrize(
    ("gtid", "message"),
    [
        (f"{U1}:1-5", "not a transaction number"),
        (f"{U1}", "expected uuid:gno"),
        (f"{U1}:a:b:1", "expected uuid:gno"),
        (f"{U1}:0", "transaction number 0 is not allowed"),
        (f"{U1}:bad-tag:1", "neither an interval nor a tag"),
        (f"{U1}:x", "not a transaction number"),
        ("0-1-5", "expected uuid:gno"),
        ("nope:1", "not a server UUID"),
    ],
)
def test_mysql_add_malformed(gtid: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MySQLGtidSet().add(gtid)


@pytest.mark.parametrize(
    ("applied", "target", "expected"),
    [
        ("", "", True),
        (f"{U1}:1-5", "", True),
        ("", f"{U1}:1", False),
        (f"{U1}:1-5", f"{U1}:1-5", True),
        (f"{U1}:1-5", f"{U1}:2-4", True),
        (f"{U1}:1-5", f"{U1}:1-6", False),
        # A gap is not covered even though the later range is.
        (f"{U1}:1-5:7-9", f"{U1}:6", False),
        (f"{U1}:1-5:7-9", f"{U1}:5-7", False),
        (f"{U1}:1-5:7-9", f"{U1}:1-5:8", True),
        (f"{U1}:1-5:7-9", f"{U1}:10", False),
        # Several UUIDs: one ahead, one behind.
        (f"{U1}:1-100,{U2}:1-3", f"{U1}:1-50,{U2}:1-4", False),
        (f"{U1}:1-100,{U2}:1-4", f"{U1}:1-50,{U2}:1-4", True),
        (f"{U1}:1-100", f"{U1}:1-50,{U2}:1", False),
        (f"{U1}:1-100,{U2}:1,{U3}:1-9", f"{U2}:1", True),
        # Tags are distinct sources.
        (f"{U1}:1-5", f"{U1}:t:1", False),
        (f"{U1}:t:1-5", f"{U1}:1", False),
        (f"{U1}:1-5:t:1-5", f"{U1}:3:t:2-4", True),
        (f"{U1}:1-5:t:1-5", f"{U1}:3:u:2", False),
    ],
)
def test_mysql_covers(applied: str, target: str, expected: bool) -> None:
    a = MySQLGtidSet.parse(applied)
    t = MySQLGtidSet.parse(target)
    assert a.contains(t) is expected
    assert a.covers(t) is expected
    assert covers(a, t) is expected


def test_mysql_membership() -> None:
    gtid_set = MySQLGtidSet.parse(f"{U1}:1-5:7-9:t:3")
    assert f"{U1}:1" in gtid_set
    assert f"{U1.upper()}:9" in gtid_set
    assert f"{U1}:6" not in gtid_set
    assert f"{U1}:10" not in gtid_set
    assert f"{U1}:t:3" in gtid_set
    assert f"{U1}:T:3" in gtid_set
    assert f"{U1}:t:4" not in gtid_set
    assert f"{U2}:1" not in gtid_set
    assert 5 not in gtid_set
    with pytest.raises(ValueError):
        _ = "garbage" in gtid_set


# =========================================================================== flavour-neutral API


@pytest.mark.parametrize(
    ("flavor", "text", "cls", "canonical"),
    [
        (Flavor.MARIADB, "1-1-1,0-1-5", MariaDBPosition, "0-1-5,1-1-1"),
        (Flavor.MARIADB, "", MariaDBPosition, ""),
        (Flavor.MYSQL, f"{U2}:1,{U1}:1-3", MySQLGtidSet, f"{U1}:1-3,{U2}:1"),
        (Flavor.MYSQL, "", MySQLGtidSet, ""),
    ],
)
def test_parse_position(flavor: Flavor, text: str, cls: type, canonical: str) -> None:
    position = parse_position(flavor, text)
    assert isinstance(position, cls)
    assert position.flavor is flavor
    assert str(position) == canonical


def test_parse_position_wrong_flavour_text() -> None:
    with pytest.raises(ValueError):
        parse_position(Flavor.MARIADB, f"{U1}:1-5")
    with pytest.raises(ValueError):
        parse_position(Flavor.MYSQL, "0-1-5")


def test_advance_mismatch() -> None:
    with pytest.raises(ValueError):
        advance(MariaDBPosition(), f"{U1}:1")
    with pytest.raises(ValueError):
        advance(MySQLGtidSet(), "0-1-5")
    with pytest.raises(TypeError):
        advance("0-1-5", "0-1-6")  # type: ignore[arg-type]


def test_covers_mismatch() -> None:
    with pytest.raises(TypeError, match="cannot compare MariaDBPosition with MySQLGtidSet"):
        covers(MariaDBPosition(), MySQLGtidSet())
    with pytest.raises(TypeError):
        covers(MySQLGtidSet(), MariaDBPosition())


def test_drain_scenario_mysql() -> None:
    target = parse_position(Flavor.MYSQL, f"{U1}:1-3,{U2}:1")
    applied: GtidPosition = parse_position(Flavor.MYSQL, "")
    for gtid in (f"{U1}:1", f"{U2}:1", f"{U1}:3"):
        applied = advance(applied, gtid)
        assert not covers(applied, target)
    applied = advance(applied, f"{U1}:2")
    assert covers(applied, target)


def test_drain_scenario_mariadb() -> None:
    target = parse_position(Flavor.MARIADB, "0-1-3,1-1-1")
    applied: GtidPosition = parse_position(Flavor.MARIADB, "")
    for gtid in ("0-1-1", "0-1-2", "1-1-1"):
        applied = advance(applied, gtid)
        assert not covers(applied, target)
    applied = advance(applied, "0-2-3")
    assert covers(applied, target)


# =========================================================================== properties

UUIDS = st.sampled_from([U1, U2, U3])
TAGS = st.sampled_from(["", "", "t", "tag_1"])
SOURCES = st.builds(lambda u, t: f"{u}:{t}" if t else u, UUIDS, TAGS)
GTID_PAIRS = st.tuples(SOURCES, st.integers(min_value=1, max_value=30))
MODELS = st.frozensets(GTID_PAIRS, max_size=25)


def from_model(model: frozenset[tuple[str, int]]) -> MySQLGtidSet:
    """Build a set from (source, gno) pairs via singleton intervals."""
    return MySQLGtidSet(tuple((source, ((gno, gno),)) for source, gno in model))


def to_model(gtid_set: MySQLGtidSet) -> frozenset[tuple[str, int]]:
    """Expand every interval into individual (source, gno) pairs."""
    return frozenset(
        (source, gno)
        for source in gtid_set.sources
        for start, end in gtid_set.intervals(source)
        for gno in range(start, end + 1)
    )


MYSQL_SETS = MODELS.map(from_model)
MARIADB_GTIDS = st.builds(
    MariaDBGtid,
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=0, max_value=20),
)
MARIADB_POSITIONS = st.lists(MARIADB_GTIDS, max_size=6).map(lambda g: MariaDBPosition(tuple(g)))


@SMALL
@given(MODELS)
def test_prop_mysql_model_roundtrip(model: frozenset[tuple[str, int]]) -> None:
    gtid_set = from_model(model)
    assert to_model(gtid_set) == model
    for source in gtid_set.sources:
        intervals = gtid_set.intervals(source)
        # Canonical: sorted, and separated by at least one missing gno.
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(intervals))


@SMALL
@given(MYSQL_SETS)
def test_prop_mysql_str_roundtrip(gtid_set: MySQLGtidSet) -> None:
    text = str(gtid_set)
    assert MySQLGtidSet.parse(text) == gtid_set
    assert str(MySQLGtidSet.parse(text.upper())) == text


@SMALL
@given(MARIADB_POSITIONS)
def test_prop_mariadb_str_roundtrip(position: MariaDBPosition) -> None:
    assert MariaDBPosition.parse(str(position)) == position
    assert list(position.domains) == sorted(set(position.domains))


@SMALL
@given(MYSQL_SETS, MYSQL_SETS, MYSQL_SETS)
def test_prop_union_laws(a: MySQLGtidSet, b: MySQLGtidSet, c: MySQLGtidSet) -> None:
    assert a.union(b) == b.union(a)
    assert a.union(b).union(c) == a.union(b.union(c))
    assert a.union(a) == a
    assert a.union(MySQLGtidSet()) == a
    assert a.union(b).covers(a)
    assert a.union(b).covers(b)
    assert to_model(a.union(b)) == to_model(a) | to_model(b)


@SMALL
@given(MODELS, MODELS)
def test_prop_contains_matches_model(ma: frozenset[tuple[str, int]], mb: frozenset[tuple[str, int]]) -> None:
    a, b = from_model(ma), from_model(mb)
    assert a.contains(b) == (mb <= ma)
    assert b.contains(a) == (ma <= mb)
    # A subset drawn from a set is always contained in it.
    sub = from_model(frozenset(list(ma)[::2]))
    assert a.contains(sub)


@SMALL
@given(MODELS, GTID_PAIRS)
def test_prop_membership_matches_model(model: frozenset[tuple[str, int]], pair: tuple[str, int]) -> None:
    source, gno = pair
    assert (f"{source}:{gno}" in from_model(model)) == (pair in model)


@SMALL
@given(MYSQL_SETS.flatmap(lambda s: st.tuples(st.just(s), st.permutations(sorted(to_model(s))))))
def test_prop_add_one_by_one(case: tuple[MySQLGtidSet, list[tuple[str, int]]]) -> None:
    expected, order = case
    built: GtidPosition = MySQLGtidSet()
    for source, gno in order:
        built = advance(built, f"{source}:{gno}")
    assert built == MySQLGtidSet.parse(str(expected))


@SMALL
@given(MARIADB_POSITIONS, st.lists(MARIADB_GTIDS, max_size=10))
def test_prop_mariadb_advance_monotonic(start: MariaDBPosition, events: list[MariaDBGtid]) -> None:
    position = start
    for gtid in events:
        after = position.advance(gtid)
        assert after.covers(position)
        # The event's own transaction is always covered afterwards.
        assert after.covers(MariaDBPosition((gtid,)))
        for domain in position.domains:
            before_gtid, after_gtid = position.get(domain), after.get(domain)
            assert before_gtid is not None and after_gtid is not None
            assert after_gtid.seq >= before_gtid.seq
        position = after
    assert position.covers(start)


@SMALL
@given(MARIADB_POSITIONS, MARIADB_POSITIONS)
def test_prop_mariadb_covers_matches_model(a: MariaDBPosition, b: MariaDBPosition) -> None:
    seqs = {g.domain: g.seq for g in a.gtids}
    expected = all(d in seqs and seqs[d] >= g.seq for d, g in ((g.domain, g) for g in b.gtids))
    assert a.covers(b) == expected
    assert a.covers(a)
    assert a.covers(MariaDBPosition())
