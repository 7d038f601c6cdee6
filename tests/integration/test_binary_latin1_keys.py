"""BINARY(16) keys ending in 0x00 and latin1 keys holding 0x80-0xFF, by the copy and by the binlog.

Two ways the target used to go wrong without a word (issue 21, item 3):

* the binlog strips BINARY(N)'s trailing 0x00 bytes, so the writer's DELETE of such a key (a
  deleted row, or the old key of an updated one) matched nothing and the row stayed on the target;
* latin1 key bytes went through Python's cp1252, which has no character for 0x81, 0x8D, 0x8F, 0x90
  and 0x9D: the move stopped with exit 1 on the first change of such a row, and on every re-run.

Both tables change after the copy in every way (insert, value update, key update, delete,
case-only key changes in a case-insensitive collation), then the move cuts over and both sides
must be equal byte for byte: HEX() of every column. The last test does the same for every
character set the server offers, including bytes an 8-bit charset stores but maps to no Unicode
character (cp1250's 0x81), which a copy read through a utf8mb4 session turned into '?'.
"""

from __future__ import annotations

import random

import pytest

from conftest import MoveEnv
from support import wait_for_log
from tablemover.local.mariadb import LocalMariaDB

FIVE = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])  # latin1 bytes Python's cp1252 cannot decode
HIGH = bytes(range(0x80, 0x100))


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[object, ...]]:
    """Every row as HEX() of every column (NULL stays None), sorted."""
    columns = [
        str(r[0])
        for r in server.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
        )
    ]
    rows = server.execute(f"SELECT {', '.join(f'HEX(`{c}`)' for c in columns)} FROM `{database}`.`{table}`")
    return sorted(rows, key=repr)


def assert_equal_bytes(move: MoveEnv, tables: dict[str, str]) -> None:
    for source_table, target_table in tables.items():
        src = hex_rows(move.source, move.database, source_table)
        dst = hex_rows(move.target, move.target_database, target_table)
        assert src, source_table
        missing = sorted(set(src) - set(dst), key=repr)[:5]
        extra = sorted(set(dst) - set(src), key=repr)[:5]
        assert src == dst, f"{source_table}: missing on target {missing}; extra on target {extra}"


def x(raw: bytes) -> str:
    return f"x'{raw.hex()}'"


def _uuid(rnd: random.Random, zeros: int) -> bytes:
    """16 bytes whose last ``zeros`` bytes are 0x00 (and the one before is not)."""
    head = bytes(rnd.randrange(256) for _ in range(15 - zeros)) + bytes([rnd.randrange(1, 256)])
    return head + bytes(zeros)


@pytest.mark.parametrize("native", ["1", "0"])  # our row decoder, and the library's
def test_binary_and_latin1_keys_change_after_the_copy(move: MoveEnv, native: str) -> None:
    rnd = random.Random(21)
    move.src(
        "CREATE TABLE b (id BINARY(16) NOT NULL PRIMARY KEY, v BINARY(4) NULL, vb VARBINARY(8), n INT)",
        # A composite key whose BINARY part ends in zero bytes, next to an INT.
        "CREATE TABLE bc (g INT NOT NULL, id BINARY(8) NOT NULL, v INT, PRIMARY KEY (g, id))",
        "CREATE TABLE l (k VARCHAR(8) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL PRIMARY KEY, "
        "v TEXT CHARACTER SET latin1, c CHAR(5) CHARACTER SET latin1 NULL, n INT)",
        "CREATE TABLE lb (a CHAR(1) CHARACTER SET latin1 COLLATE latin1_bin NOT NULL, n INT NOT NULL, "
        "v VARCHAR(300) CHARACTER SET latin1, PRIMARY KEY (a, n))",
    )
    ids = [_uuid(rnd, zeros) for zeros in [1, 2, 15, 0, 3] * 12] + [bytes(16), bytes(15) + b"\x01"]
    ids = list(dict.fromkeys(ids))
    values = [b"\x01\x00\x00\x00", bytes(4), b"\x00\x00\x00\x01", b"ab  ", None]
    move.src(
        "INSERT INTO b VALUES "
        + ", ".join(
            f"({x(i)}, {x(v) if (v := values[n % 5]) is not None else 'NULL'}, {x(i[-4:])}, {n})"
            for n, i in enumerate(ids)
        ),
        "INSERT INTO bc VALUES "
        + ", ".join(f"({n % 3}, {x(i[:6] + bytes(2))}, {n})" for n, i in enumerate(ids)),
        # Keys "000<byte>" for 0x80-0xBF before the copy; every value holds all of 0x80-0xFF.
        "INSERT INTO l VALUES "
        + ", ".join(
            f"({x(b'%03d' % n + bytes([n + 0x80]))}, {x(HIGH)}, {x(FIVE[: n % 5])}, {n})" for n in range(64)
        ),
        "INSERT INTO lb VALUES " + ", ".join(f"({x(bytes([byte]))}, 1, {x(HIGH)})" for byte in HIGH),
    )
    cfg = move.config(["b", "bc", "l", "lb"], move={"postpone_cutover": True, "chunk_size": 16})
    proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_NATIVE_DECODE": native})
    log = move.workdir / "daemon.log"
    wait_for_log(move, "cutover postponed", proc)

    # Through the binlog only. BINARY(16): delete rows whose key ends in zero bytes, change the keys
    # of others (to keys ending in zero bytes too), insert more, set values ending in 0x00.
    ending_in_zero = [i for i in ids if i.endswith(b"\x00")]
    deleted, rekeyed = ending_in_zero[::3], ending_in_zero[1::3]
    new_ids = [_uuid(rnd, 1 + n % 4) for n in range(len(rekeyed) + 10)]
    statements = [f"DELETE FROM b WHERE id = {x(i)}" for i in deleted]
    statements += [
        f"UPDATE b SET id = {x(new)} WHERE id = {x(old)}" for old, new in zip(rekeyed, new_ids, strict=False)
    ]
    statements += [
        f"INSERT INTO b VALUES ({x(i)}, {x(b'z' + bytes(3))}, {x(bytes(8))}, -1)"
        for i in new_ids[len(rekeyed) :]
    ]
    statements += ["UPDATE b SET v = x'00', vb = x'0000' WHERE n % 4 = 1"]
    statements += [
        "DELETE FROM bc WHERE g = 1",
        "UPDATE bc SET id = CONCAT(LEFT(id, 5), x'000000') WHERE g = 2",
        "INSERT INTO bc VALUES (1, x'0100000000000000', 1), (1, x'0000000000000000', 2)",
    ]
    # latin1: the rest of 0x80-0xFF as new keys, then every kind of change on keys holding the
    # five bytes cp1252 lacks; a case-only key change (0xE5 'å' -> 0xC5 'Å') is one row in
    # latin1_swedish_ci.
    statements += [
        "INSERT INTO l VALUES "
        + ", ".join(
            f"({x(b'%03d' % n + bytes([n + 0x80]))}, {x(HIGH[::-1])}, {x(FIVE)}, {n})" for n in range(64, 128)
        ),
        f"UPDATE l SET v = CONCAT(v, {x(FIVE)}), c = {x(FIVE[:4])} WHERE n % 3 = 0",
        f"UPDATE l SET k = CONCAT(k, {x(FIVE[:2])}) WHERE n IN (1, 13, 15, 16, 29)",  # 0x81, 0x8D, ...
        "DELETE FROM l WHERE n IN (17, 65, 77, 79, 80, 93)",  # keys ending in 0x91, 0xC1, 0xCD, ...
        f"UPDATE l SET k = {x(b'101' + bytes([0xC5]))} WHERE n = 101",  # 'å' -> 'Å': the same key
        "DELETE FROM lb WHERE a IN (x'81', x'8d', x'8f')",
        "UPDATE lb SET n = 2 WHERE a IN (x'90', x'9d', x'ff')",
        "UPDATE lb SET a = x'20' WHERE a = x'e0'",  # a key that is a space
        f"UPDATE lb SET v = {x(FIVE)} WHERE a = x'e1'",
        "INSERT INTO lb VALUES (x'81', 7, x'9d'), (x'8d', 7, '')",
    ]
    move.src(*statements)
    expected = len(ids) - len(deleted) + 10
    assert move.src("SELECT COUNT(*) FROM b")[0][0] == expected

    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert_equal_bytes(move, {f"_{t}_moved": t for t in ("b", "bc", "l", "lb")})
    # The rows these changes were about are really there (or gone) on the target.
    assert move.tgt(f"SELECT COUNT(*) FROM b WHERE id IN ({', '.join(x(i) for i in deleted + rekeyed)})") == [
        (0,)
    ]
    assert move.tgt("SELECT COUNT(*) FROM lb WHERE a = x'81'") == [(1,)]


TEXTS = ["a", "A", "b ", "é", "É", "Ω", "日本", "😀", "€", "ß", "ÿ", "Ё", "ק", "ก", "한"]


def _charset_rows(charset: str, single_byte: bool, first: int, count: int) -> str:
    """Rows (k, v, n): text converted into the charset, and for 8-bit charsets every byte 0x80-0xFF
    (as stored bytes: an 8-bit charset stores any byte, also one no Unicode character maps to)."""
    rows = []
    for n in range(first, first + count):
        if single_byte and n % 2:
            raw = b"r%03d" % n + bytes([0x80 + n % 128])
            key, value = x(raw), x(raw + bytes([0xFF - n % 128]))
        else:
            text = TEXTS[n % len(TEXTS)]
            key = f"CONVERT(_utf8mb4 {x(f'{n:03d}{text}'.encode())} USING {charset})"
            value = f"CONVERT(_utf8mb4 {x((text * 3).encode())} USING {charset})"
        rows.append(f"({key}, {value}, {n})")
    return ", ".join(rows)


@pytest.mark.parametrize("native", ["1", "0"])
def test_every_character_set_as_key_and_value(move: MoveEnv, native: str) -> None:
    """Every character set the server offers, as a key and a value column, byte for byte."""
    charsets = [
        (str(name), int(maxlen))
        for name, maxlen in move.source.execute(
            "SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS ORDER BY 1"
        )
    ]
    assert len(charsets) >= 30 and ("latin1", 1) in charsets and ("utf16", 4) in charsets
    statements = []
    for charset, maxlen in charsets:
        statements += [
            f"CREATE TABLE cs_{charset} (k VARCHAR(12) CHARACTER SET {charset} NOT NULL PRIMARY KEY, "
            f"v VARCHAR(40) CHARACTER SET {charset}, n INT NOT NULL)",
            # IGNORE: text the charset cannot hold becomes '?', keys equal in its collation collapse.
            f"INSERT IGNORE INTO cs_{charset} VALUES {_charset_rows(charset, maxlen == 1, 0, 40)}",
        ]
    move.src(*statements)
    tables = [f"cs_{charset}" for charset, _ in charsets]
    cfg = move.config(tables, move={"postpone_cutover": True, "chunk_size": 10})
    proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_NATIVE_DECODE": native})
    log = move.workdir / "daemon.log"
    wait_for_log(move, "cutover postponed", proc)
    statements = []
    for charset, maxlen in charsets:
        t = f"cs_{charset}"
        statements += [
            f"INSERT IGNORE INTO {t} VALUES {_charset_rows(charset, maxlen == 1, 40, 20)}",
            f"UPDATE IGNORE {t} SET v = CONCAT(v, k) WHERE n % 3 = 0",
            f"UPDATE IGNORE {t} SET k = CONCAT(k, CONVERT(_utf8mb4 'z' USING {charset})) WHERE n % 4 = 1",
            f"DELETE FROM {t} WHERE n % 5 = 2",
        ]
    move.src(*statements)
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0, log.read_text()[-3000:]
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert_equal_bytes(move, {f"_{t}_moved": t for t in tables})
