"""The type matrix, forward and back (issue 21, item 8): every MariaDB column type, byte for byte.

Each key-capable type (every integer width, DECIMAL, FLOAT, DOUBLE, BIT, every temporal type, CHAR
and VARCHAR in utf8mb4_general_ci, utf8mb4_bin, latin1, ascii and binary, ENUM, SET, INET4,
INET6, UUID) gets a table keyed by a column of that type alone, with a value column and a
nullable UNIQUE column of the same type (NULL in a unique key). Composite keys mix the types, eight
to a key. TEXT, BLOB (large ones), JSON and GEOMETRY are value columns of their own table.

The values are the edge values that have broken movers (trailing 0x00 bytes and spaces, '' next
to NULL, min and max numbers, zero and fractional temporals, latin1's 0x81/0x8D/0x8F/0x90/0x9D,
4-byte UTF-8, case-only differences in a _ci key, JSON numbers no double holds, 100 KB values),
plus a few more per type drawn by hypothesis. Every example runs one whole move:

1. rows inserted before the copy (chunks of 10, so keyset paging walks over the edge values);
2. inserts, value updates, key updates and deletes on the source after the copy (the binlog);
3. the cutover; source and target compared (HEX of every column);
4. inserts, updates and deletes on the target in the rollback window; ``tablemover rollback``;
   the source's tables (renamed back) compared with the target's.

Statements run with IGNORE: whatever the server makes of a value (a key that collides with another
in its collation, a value it adjusts) is what both sides must agree on. Two examples for each
decoder (ours and the library's), no shrinking (each example is a move of 42 tables): about a
minute on 2 busy cores.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import MoveEnv, drop_move_schemas, make_move_env
from support import wait_for_log
from tablemover.local.mariadb import LocalMariaDB, LocalPair

FIVE = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])  # latin1 bytes Python's cp1252 has no character for


def x(raw: bytes) -> str:
    return f"x'{raw.hex()}'"


def quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class Kind:
    """One column type: its DDL, whether it can be a key, edge literals and more drawn by hypothesis."""

    name: str
    ddl: str
    edges: list[str]
    more: st.SearchStrategy[str]
    key: bool = True
    drawn: list[str] = field(default_factory=list)

    @property
    def values(self) -> list[str]:
        return list(dict.fromkeys(self.edges + self.drawn))


def _ints(name: str, ddl: str, lo: int, hi: int) -> Kind:
    edges = [str(lo), str(hi), "0", "1"] + (["-1"] if lo < 0 else [])
    return Kind(name, ddl, edges, st.integers(lo, hi).map(str))


def _strings(name: str, ddl: str, charset: str, length: int) -> Kind:
    edges = [b"", b" ", b"a", b"A", b"a ", b" a", b"\x00", b"a\x00", b"\x00\x00", b"a  \x00"]
    if charset == "utf8mb4":
        edges += ["😀".encode(), "é".encode(), b"e", "É😀 ".encode()]
        more = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=length).map(
            lambda s: s.encode()
        )
    elif charset == "latin1":
        edges += [FIVE[:length], b"\xe5", b"\xc5", bytes(range(0x80, 0x80 + length))]
        more = st.binary(max_size=length)
    elif charset == "ascii":
        edges += [b"\x7f", b"~ "]
        more = st.binary(max_size=length).map(lambda b: bytes(c & 0x7F for c in b))
    else:  # binary
        edges += [b"\xff" * length, bytes(length), FIVE[:length]]
        more = st.binary(max_size=length)
    return Kind(name, ddl, [x(e) for e in edges if len(e) <= length], more.map(x))


def _temporal(fmt: Callable[[dt.datetime], str], lo: dt.datetime, hi: dt.datetime) -> st.SearchStrategy[str]:
    return st.datetimes(lo, hi).map(lambda d: quoted(fmt(d)))


def _time_text(micros: int, fraction: bool) -> str:
    sign = "-" if micros < 0 else ""
    seconds, frac = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return quoted(text + (f".{frac:06d}" if fraction else ""))


MAX_TIME = (838 * 3600 + 59 * 60 + 59) * 1_000_000
EARLY, LATE = dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)
TS_EARLY, TS_LATE = dt.datetime(1970, 1, 2), dt.datetime(2038, 1, 18)


def kinds() -> list[Kind]:
    """Every type of the matrix (fresh objects: each example draws its own extra values)."""
    return [
        _ints("ti", "TINYINT", -128, 127),
        _ints("tiu", "TINYINT UNSIGNED", 0, 255),
        _ints("si", "SMALLINT", -(2**15), 2**15 - 1),
        _ints("miu", "MEDIUMINT UNSIGNED", 0, 2**24 - 1),
        _ints("mi", "MEDIUMINT", -(2**23), 2**23 - 1),
        _ints("iu", "INT UNSIGNED", 0, 2**32 - 1),
        _ints("i", "INT", -(2**31), 2**31 - 1),
        _ints("bi", "BIGINT", -(2**63), 2**63 - 1),
        _ints("biu", "BIGINT UNSIGNED", 0, 2**64 - 1),
        Kind(
            "de",
            "DECIMAL(30,10)",
            [
                "'-99999999999999999999.9999999999'",
                "'99999999999999999999.9999999999'",
                "'0.0000000001'",
                "0",
            ],
            st.decimals(-(10**20) + 1, 10**20 - 1, places=10).map(lambda d: f"'{d}'"),
        ),
        Kind(
            "fl",
            "FLOAT",
            ["-3.40282e38", "3.40282e38", "1.17549e-38", "0", "1.2345678", "-0.5"],
            st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda f: repr(float(f))),
        ),
        Kind(
            "db",
            "DOUBLE",
            ["-1.7976931348623157e308", "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308", "0.1"],
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
        ),
        Kind(
            "bt",
            "BIT(64)",
            ["b'0'", "b'" + "1" * 64 + "'", "b'1'", "b'10000000'"],
            st.integers(0, 2**64 - 1).map(lambda n: f"b'{n:b}'"),
        ),
        Kind("b1", "BIT(1)", ["b'0'", "b'1'"], st.sampled_from(["b'0'", "b'1'"])),
        Kind(
            "da",
            "DATE",
            ["'0000-00-00'", "'1000-01-01'", "'9999-12-31'", "'2024-02-29'", "'2024-05-00'", "'2024-00-00'"],
            _temporal(lambda d: d.date().isoformat(), EARLY, LATE),
        ),
        Kind(
            "dt6",
            "DATETIME(6)",
            [
                "'0000-00-00 00:00:00'",
                "'1000-01-01 00:00:00'",
                "'9999-12-31 23:59:59.999999'",
                "'2024-02-29 12:34:56.000001'",
            ],
            _temporal(lambda d: d.isoformat(sep=" ", timespec="microseconds"), EARLY, LATE),
        ),
        Kind(
            "dt0",
            "DATETIME",
            [
                "'0000-00-00 00:00:00'",
                "'1000-01-01 00:00:00'",
                "'9999-12-31 23:59:59'",
                "'2024-05-00 01:02:03'",
            ],
            _temporal(lambda d: d.isoformat(sep=" ", timespec="seconds"), EARLY, LATE),
        ),
        Kind(
            "ts6",
            "TIMESTAMP(6)",
            [
                "'0000-00-00 00:00:00'",
                "'1970-01-01 00:00:01'",
                "'2038-01-19 03:14:07.999999'",
                "'2000-01-01 00:00:00.5'",
            ],
            _temporal(lambda d: d.isoformat(sep=" ", timespec="microseconds"), TS_EARLY, TS_LATE),
        ),
        Kind(
            "tm6",
            "TIME(6)",
            ["'-838:59:59'", "'838:59:59'", "'00:00:00'", "'-00:00:00.000001'", "'12:34:56.5'"],
            st.integers(-MAX_TIME, MAX_TIME).map(lambda m: _time_text(m, True)),
        ),
        Kind(
            "tm0",
            "TIME",
            ["'-838:59:59'", "'838:59:59'", "'00:00:00'", "'-00:00:01'"],
            st.integers(-MAX_TIME // 10**6, MAX_TIME // 10**6).map(lambda s: _time_text(s * 10**6, False)),
        ),
        Kind("yr", "YEAR", ["0", "1901", "2155", "2000"], st.integers(1901, 2155).map(str)),
        _strings("cu", "CHAR(6) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", "utf8mb4", 6),
        _strings("vu", "VARCHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", "utf8mb4", 12),
        _strings("cub", "CHAR(6) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "utf8mb4", 6),
        _strings("vub", "VARCHAR(12) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "utf8mb4", 12),
        _strings("cl", "CHAR(6) CHARACTER SET latin1", "latin1", 6),
        _strings("vl", "VARCHAR(12) CHARACTER SET latin1", "latin1", 12),
        _strings("ca", "CHAR(6) CHARACTER SET ascii", "ascii", 6),
        _strings("va", "VARCHAR(12) CHARACTER SET ascii", "ascii", 12),
        _strings("bn", "BINARY(6)", "binary", 6),
        _strings("vb", "VARBINARY(12)", "binary", 12),
        Kind(
            "en",
            "ENUM('a','b','it''s','','é')",
            ["'a'", "'b'", "'it''s'", "''", "'A'", "'é'"],
            st.sampled_from(["'a'", "'b'", "'é'"]),
        ),
        Kind(
            "se",
            "SET('x','y','z')",
            ["''", "'x'", "'x,y,z'", "'z,x'", "'y'"],
            st.sampled_from(["'x,y'", "'z'"]),
        ),
        Kind(
            "i4",
            "INET4",
            ["'0.0.0.0'", "'255.255.255.255'", "'10.0.0.0'"],
            st.ip_addresses(v=4).map(lambda a: quoted(str(a))),
        ),
        Kind(
            "i6",
            "INET6",
            ["'::'", "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'", "'::ffff:1.2.3.4'", "'2001:db8::'"],
            st.ip_addresses(v=6).map(lambda a: quoted(str(a))),
        ),
        Kind(
            "uu",
            "UUID",
            [
                "'00000000-0000-0000-0000-000000000000'",
                "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
                "'123e4567-e89b-12d3-a456-426614174000'",
                "'00000000-0000-0000-0000-000000000100'",
            ],
            st.uuids().map(lambda u: quoted(str(u))),
        ),
    ]


# Value-only columns (no full-length index on them): large TEXT/BLOB, JSON, GEOMETRY.
VALUE_TABLE = (
    "CREATE TABLE vals (id INT NOT NULL PRIMARY KEY, tt TINYTEXT CHARACTER SET utf8mb4, "
    "tl TEXT CHARACTER SET latin1, mt MEDIUMTEXT CHARACTER SET utf8mb4, lt LONGTEXT CHARACTER SET ascii, "
    "tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, j JSON, g GEOMETRY NULL)"
)
VALUE_ROWS = [
    "('', '', '', '', '', '', '', '[]', NULL)",
    "(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    f"('😀 ', {x(FIVE + b' ')}, REPEAT('ü😀', 30000), REPEAT('a ', 50000), x'00', x'6100', "
    "REPEAT(x'00ff00', 100000), '{\"n\": 123456789012345678901234567890, \"d\": 1.0000000000000000001}', "
    "ST_GeomFromText('POINT(1 2)'))",
    f"(' ', {x(bytes(range(0x80, 0x100)))}, '', '\\0', {x(bytes(255))}, x'00', '', "
    "'[9007199254740993, -0.0, 1e400, \"\\\\u0000\"]', ST_GeomFromText('LINESTRING(0 0, 1 1)'))",
]


def composite_groups(all_kinds: list[Kind]) -> list[list[Kind]]:
    """Key types eight to a composite key."""
    keyed = [k for k in all_kinds if k.key]
    return [keyed[i : i + 8] for i in range(0, len(keyed), 8)]


def ddl(all_kinds: list[Kind]) -> list[str]:
    out = [
        f"CREATE TABLE s_{k.name} (k {k.ddl} NOT NULL PRIMARY KEY, v {k.ddl} NULL, u {k.ddl} NULL, "
        "n INT NOT NULL DEFAULT 0, UNIQUE KEY (u))"
        for k in all_kinds
    ]
    for g, group in enumerate(composite_groups(all_kinds)):
        cols = ", ".join(f"k_{k.name} {k.ddl} NOT NULL" for k in group)
        key = ", ".join(f"k_{k.name}" for k in group)
        out.append(f"CREATE TABLE c{g} ({cols}, n INT NOT NULL DEFAULT 0, PRIMARY KEY ({key}))")
    out.append(VALUE_TABLE)
    return out


def tables(all_kinds: list[Kind]) -> list[str]:
    return (
        [f"s_{k.name}" for k in all_kinds]
        + [f"c{g}" for g in range(len(composite_groups(all_kinds)))]
        + ["vals"]
    )


def fill(all_kinds: list[Kind], rnd: random.Random) -> list[str]:
    """Rows inserted before the copy."""
    out = []
    for k in all_kinds:
        vals = k.values
        rows = [f"({v}, {rnd.choice(vals)}, {v if i % 2 else 'NULL'}, {i})" for i, v in enumerate(vals)]
        out.append(f"INSERT IGNORE INTO s_{k.name} (k, v, u, n) VALUES {', '.join(rows)}")
    for g, group in enumerate(composite_groups(all_kinds)):
        rows = ["(" + ", ".join(rnd.choice(k.values) for k in group) + f", {i})" for i in range(40)]
        out.append(f"INSERT IGNORE INTO c{g} VALUES {', '.join(rows)}")
    out.append(
        "INSERT INTO vals VALUES "
        + ", ".join(f"({i}, {row[1:]}" for i, row in enumerate(VALUE_ROWS, start=1))
    )
    return out


def changes(all_kinds: list[Kind], rnd: random.Random, base: int, renamed: Callable[[str], str]) -> list[str]:
    """Inserts, value updates, key updates and deletes (of edge values) on every table."""
    out = []
    for k in all_kinds:
        t = renamed(f"s_{k.name}")
        vals = k.values
        pick = rnd.choice
        out += [
            f"INSERT IGNORE INTO {t} (k, v, u, n) VALUES ({pick(vals)}, {pick(vals)}, {pick(vals)}, {base}), "
            f"({pick(vals)}, NULL, NULL, {base + 1})",
            f"UPDATE IGNORE {t} SET v = {pick(vals)}, u = NULL WHERE k = {pick(vals)}",
            f"UPDATE IGNORE {t} SET v = u, u = {pick(vals)}, n = n + 1 WHERE n % 3 = {rnd.randrange(3)}",
            f"UPDATE IGNORE {t} SET k = {pick(vals)} WHERE k = {pick(vals)}",
            f"UPDATE IGNORE {t} SET k = {pick(vals)} WHERE n = {rnd.randrange(len(vals))}",
            f"DELETE FROM {t} WHERE k = {pick(vals)}",
            f"DELETE FROM {t} WHERE n = {rnd.randrange(len(vals))}",
        ]
    for g, group in enumerate(composite_groups(all_kinds)):
        t = renamed(f"c{g}")
        a, b = rnd.sample(group, 2)
        out += [
            f"INSERT IGNORE INTO {t} VALUES ("
            + ", ".join(rnd.choice(k.values) for k in group)
            + f", {base})",
            f"UPDATE IGNORE {t} SET k_{a.name} = {rnd.choice(a.values)} "
            f"WHERE k_{b.name} = {rnd.choice(b.values)}",
            f"UPDATE IGNORE {t} SET n = n + 1 WHERE n % 4 = {rnd.randrange(4)}",
            f"DELETE FROM {t} WHERE k_{b.name} = {rnd.choice(b.values)}",
            f"DELETE FROM {t} WHERE n = {rnd.randrange(40)}",
        ]
    t = renamed("vals")
    out += [
        f"INSERT INTO {t} (id, tt, bl, j) VALUES ({base}, '😀', REPEAT(x'00', 70000), '{{\"big\": 1e999}}')",
        f"UPDATE {t} SET mt = CONCAT(mt, {x(FIVE.decode('latin1').encode())}), tl = {x(FIVE)} WHERE id = 3",
        f"UPDATE {t} SET id = id + {base} WHERE id = 2",
        f"DELETE FROM {t} WHERE id = 4",
    ]
    return out


# --------------------------------------------------------------------------- comparison


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[object, ...]]:
    """Every row, HEX() of every column (numbers that HEX() would round as their exact text)."""
    columns = server.execute(
        "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
    )
    exprs = []
    for name, data_type in columns:
        if data_type == "float":
            exprs.append(f"HEX(CAST(CAST(`{name}` AS DOUBLE) AS CHAR))")
        elif data_type in ("decimal", "double"):
            exprs.append(f"HEX(CAST(`{name}` AS CHAR))")
        else:
            exprs.append(f"HEX(`{name}`)")
    rows = server.execute(f"SELECT {', '.join(exprs)} FROM `{database}`.`{table}`")
    return sorted(rows, key=repr)


def assert_equal(
    source: LocalMariaDB, source_db: str, target: LocalMariaDB, target_db: str, pairs: dict[str, str]
) -> None:
    for src_table, dst_table in pairs.items():
        src = hex_rows(source, source_db, src_table)
        dst = hex_rows(target, target_db, dst_table)
        missing = sorted(set(src) - set(dst), key=repr)[:3]
        extra = sorted(set(dst) - set(src), key=repr)[:3]
        assert src == dst, f"{src_table} -> {dst_table}: missing {missing}; extra {extra}"


# --------------------------------------------------------------------------- the test


@pytest.fixture
def fresh_moves(window_pair: LocalPair, tmp_path: Path) -> Iterator[Callable[[], MoveEnv]]:
    """A new move (its own schemas and work directory) for every hypothesis example."""
    made: list[MoveEnv] = []

    def make() -> MoveEnv:
        workdir = tmp_path / uuid.uuid4().hex[:10]
        workdir.mkdir()
        env = make_move_env(window_pair, workdir)
        made.append(env)
        return env

    yield make
    for env in made:
        for proc in env.procs:
            if proc.poll() is None:
                proc.kill()
        drop_move_schemas(env)


SESSION = ("SET time_zone = '+00:00'", "SET sql_mode = 'NO_ENGINE_SUBSTITUTION'")


@pytest.mark.parametrize("native", ["1", "0"])  # our row decoder, and the library's
@given(st.data())
@settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a whole move
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    database=None,
)
def test_every_type_moves_and_rolls_back_byte_for_byte(
    fresh_moves: Callable[[], MoveEnv], native: str, data: st.DataObject
) -> None:
    move = fresh_moves()
    all_kinds = kinds()
    for k in all_kinds:
        k.drawn = data.draw(st.lists(k.more, max_size=3), label=k.name)
    rnd = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    move.src(*SESSION, *ddl(all_kinds), *fill(all_kinds, rnd))
    names = tables(all_kinds)
    cfg = move.config(names, move={"chunk_size": 10, "postpone_cutover": True, "rollback_window_s": 900})
    move.extra_env["TABLEMOVER_NATIVE_DECODE"] = native
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "cutover postponed", daemon, timeout=300)

    # After the copy: through the binlog only.
    move.src(*SESSION, *changes(all_kinds, rnd, 1000, lambda t: t))
    cutover = move.cli("cutover", "-c", str(cfg))
    assert cutover.returncode == 0, (move.workdir / "daemon.log").read_text()[-3000:] + cutover.stderr[-1000:]
    wait_for_log(move, "rollback window open", daemon, timeout=300)
    assert_equal(
        move.source, move.database, move.target, move.target_database, {f"_{t}_moved": t for t in names}
    )

    # In the rollback window: the application writes to the target; then the way back.
    move.tgt(*SESSION, *changes(all_kinds, rnd, 2000, lambda t: t))
    result = move.cli("rollback", "-c", str(cfg), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert_equal(
        move.source, move.database, move.target, move.target_database, {t: f"_{t}_rolledback" for t in names}
    )
