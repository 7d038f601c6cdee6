"""Type fidelity: every common column type round-trips exactly, through the copy and the binlog."""

from __future__ import annotations

import json

import pytest

from conftest import MoveEnv
from support import assert_tables_equal
from tablemover.local.mariadb import LocalMariaDB

DDL = """CREATE TABLE types (
 id INT PRIMARY KEY,
 ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
 i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
 d DECIMAL(30,10), dz DECIMAL(5,0), f FLOAT, db DOUBLE,
 dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(2), tm0 TIME, y YEAR,
 c CHAR(5), vc VARCHAR(20), tx TEXT, lat VARCHAR(10) CHARACTER SET latin1, mtx MEDIUMTEXT,
 bn BINARY(4), vb VARBINARY(10), bl BLOB,
 bt BIT(10), b1 BIT(1), e ENUM('a','b','it''s'), s SET('x','y','z'), j JSON,
 gv BIGINT AS (i + 1) VIRTUAL, gs BIGINT AS (bi DIV 2) STORED
)"""

COLUMNS = (
    "id,ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d,dz,f,db,dt,dtm,ts,tm,tm0,y,c,vc,tx,lat,mtx,bn,vb,bl,bt,b1,e,s,j"
)

LOW = (
    "-128,0,-32768,0,-8388608,0,-2147483648,0,-9223372036854775808,0,"
    "'-12345678901234567890.0123456789',-99999,-3.4e38,-1.7976931348623157e308,"
    "'1000-01-01','1000-01-01 00:00:00.000000','1970-01-01 00:00:01.000','-838:59:59.99','-00:00:01',1901,"
    "'','',' lead','\\0','',"
    "x'00000000',x'',x'00',b'0',b'0','a','','[]'"
)
HIGH = (
    "127,255,32767,65535,8388607,16777215,2147483647,4294967295,9223372036854775807,18446744073709551615,"
    "'12345678901234567890.0123456789',99999,3.4e38,1.7976931348623157e308,"
    "'9999-12-31','9999-12-31 23:59:59.999999','2038-01-19 03:14:07.999','838:59:59.99','838:59:59',2155,"
    "'abcde','héllo 😀 ñ','trailing  ','€ café ÿ',REPEAT('ü😀',5000),"
    "x'ffffffff',x'00ff00ff0000',x'deadbeef00',b'1111111111',b'1',\"it's\",'x,y,z',"
    '\'{"a": [1, 2.5, "x", null], "u": "😀", "n": {"deep": true}}\''
)
MID = (
    "-1,1,-1,1,-1,1,-1,1,-1,1,'0.0000000001',0,0.1,0.1,'2024-02-29','2024-02-29 12:34:56.123456',"
    "'2024-02-29 12:34:56.789','-12:00:00.50','00:00:00',2024,'a b','tab\\tnew\\nline','back\\\\slash',"
    "'quote''s',NULL,x'00',x'0a0d',NULL,b'0101010101',NULL,'b','y','\"just a string\"'"
)
NULLS = ",".join(["NULL"] * 33)
# Zero dates and an empty SET are values, not NULLs (the binlog library reports them as None).
_zero = ["NULL"] * 33
_zero[COLUMNS.split(",").index("dt") - 1] = "'2024-05-00'"
_zero[COLUMNS.split(",").index("dtm") - 1] = "'0000-00-00 00:00:00'"
_zero[COLUMNS.split(",").index("s") - 1] = "''"
ZERO = ",".join(_zero)


# A date a source running with ALLOW_INVALID_DATES holds (strict mode alone would refuse it), and a
# FLOAT with 8 significant digits, which the text protocol prints rounded to 6 (1.23457).
_odd = ["NULL"] * 33
_odd[COLUMNS.split(",").index("dt") - 1] = "'2024-02-30'"
_odd[COLUMNS.split(",").index("dtm") - 1] = "'2023-02-29 23:59:59.999999'"
_odd[COLUMNS.split(",").index("f") - 1] = "1.2345678"
ODD = ",".join(_odd)

# Both variants go through MariaDB's bulk protocol: a BIGINT UNSIGNED above 2^63 - 1 travels as
# decimal text inside the bulk batch.
HIGH_SIGNED_FIT = HIGH.replace(",18446744073709551615,", ",9223372036854775807,")
assert HIGH_SIGNED_FIT != HIGH


def _insert(move: MoveEnv, first_id: int, high: str = HIGH) -> None:
    """Insert LOW, HIGH, MID, the all-NULL row, the zero-date row and the odd-values row."""
    images = [LOW, high, MID, NULLS, ZERO, ODD]
    values = ",".join(f"({first_id + i},{image})" for i, image in enumerate(images))
    move.src(
        "SET time_zone='+00:00'",
        "SET sql_mode = CONCAT(@@sql_mode, ',ALLOW_INVALID_DATES')",
        f"INSERT INTO types ({COLUMNS}) VALUES {values}",
    )


def _batch_counts(stderr: str) -> tuple[int, int]:
    """(bulk, text) batch counts from the run's "copy complete and caught up" line."""
    line = next(ln for ln in stderr.splitlines() if "copy complete and caught up" in ln)
    fields = json.loads(line)
    return int(fields["bulk_batches"]), int(fields["text_batches"])


def _exact_floats(server: LocalMariaDB, database: str) -> list[tuple[object, ...]]:
    # The text protocol prints FLOAT rounded to 6 digits; as DOUBLE it is exact.
    return server.execute(f"SELECT id, CAST(f AS DOUBLE) FROM `{database}`.types ORDER BY id")


@pytest.mark.parametrize("high", [HIGH, HIGH_SIGNED_FIT], ids=["unsigned-max", "signed-range"])
def test_every_type_round_trips_through_copy_and_binlog_in_bulk(any_move: MoveEnv, high: str) -> None:
    move = any_move
    move.src(DDL)
    _insert(move, 1, high)
    cfg = move.config(["types"], move={"chunk_size": 1000})

    # First run: the whole table is one chunk, through the bulk protocol.
    first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert first.returncode == 0, first.stderr[-2000:]
    assert _batch_counts(first.stderr) == (1, 0), first.stderr[-2000:]
    assert move.tgt("SELECT COUNT(*) FROM types")[0][0] == 6

    # These changes reach the target only through the binlog: in one binlog batch, zero dates
    # (text) next to real dates (date objects), whole columns NULL, JSON, 2^64 - 1.
    _insert(move, 101, high)
    move.src(
        "SET time_zone='+00:00'",
        "SET sql_mode = CONCAT(@@sql_mode, ',ALLOW_INVALID_DATES')",
        # Every column of row 1 takes row 2's values and vice versa: UPDATE images of all types.
        "UPDATE types t1 JOIN types t2 ON t1.id=1 AND t2.id=102 SET "
        + ",".join(f"t1.{c}=t2.{c}" for c in COLUMNS.split(",")[1:]),
        "UPDATE types SET id=id+1000 WHERE id=3",  # key change
        "DELETE FROM types WHERE id=103",
    )
    second = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    bulk, text = _batch_counts(second.stderr)
    assert bulk > 0 and text == 0, second.stderr[-3000:]  # every row image went the bulk way
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"types": "types"})
    assert _exact_floats(move.target, move.target_database) == _exact_floats(move.source, move.database)
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout + verify.stderr
