"""Big rows through the writer: every request stays under the target's max_allowed_packet.

A request over max_allowed_packet makes the server drop the connection, so the writer bounds each
bulk batch to half of it. Here a chunk (and a binlog batch) of ~16 MB meets a target that accepts
1 MB: without the bound the first chunk fails. The copy runs serially (``copy_read_ahead =
false``), the setting operators use to keep one chunk locked at a time.
"""

from __future__ import annotations

import json

from conftest import MoveEnv
from support import assert_tables_equal

ROWS = 800
BLOB = 20_000  # bytes a row: 800 rows make a ~16 MB chunk


def _caught_up(stderr: str) -> dict[str, int]:
    line = next(ln for ln in stderr.splitlines() if "copy complete and caught up" in ln)
    fields: dict[str, int] = json.loads(line)
    return fields


def test_big_rows_are_written_in_batches_under_max_allowed_packet(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE w (id INT PRIMARY KEY, big BIGINT UNSIGNED, b MEDIUMBLOB, t TEXT)",
        # Every 100th row holds an unsigned value above 2^63 - 1: it travels as decimal text inside
        # the bulk batch (the driver declares integer parameters signed).
        f"INSERT INTO w SELECT seq, IF(seq % 100 = 0, 18446744073709551615 - seq, seq), "
        f"RANDOM_BYTES(1024) , REPEAT(CHAR(64 + seq % 26), 300) FROM seq_1_to_{ROWS}",
        f"UPDATE w SET b = REPEAT(b, {BLOB // 1024})",
    )
    cfg = move.config(
        ["w"], move={"chunk_size": 1000, "adaptive_chunk_size": False, "copy_read_ahead": False}
    )
    original = move.target.execute("SELECT @@global.max_allowed_packet")[0][0]
    move.target.execute("SET GLOBAL max_allowed_packet = 1048576")
    try:
        first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert first.returncode == 0, first.stderr[-3000:]
        copied = _caught_up(first.stderr)
        assert copied["bulk_batches"] >= 16, copied  # the one ~16 MB chunk went in many batches
        assert copied["text_batches"] == 0, copied  # the batches holding 2^64 - 1 - n too
        # Every row changes: one binlog batch of ~16 MB of after-images (REPLACE).
        move.src("UPDATE w SET b = REVERSE(b), t = CONCAT(t, 'x')")
        second = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert second.returncode == 0, second.stderr[-3000:]
        counts = _caught_up(second.stderr)
        assert counts["bulk_batches"] >= 16 and counts["text_batches"] == 0, second.stderr[-2000:]
    finally:
        move.target.execute(f"SET GLOBAL max_allowed_packet = {int(str(original))}")
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"w": "w"})


REALISTIC = """CREATE TABLE orders (
 id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
 customer VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL,
 note VARCHAR(200) NULL,
 cancelled_at DATETIME(6) NULL,
 created_at DATETIME(6) NOT NULL,
 shipped DATE NULL,
 total DECIMAL(12,2) NOT NULL,
 discount DECIMAL(5,4) NULL,
 attrs JSON NULL,
 photo BLOB NULL,
 status ENUM('new','paid','shipped','cancelled') NOT NULL,
 flags SET('gift','express','fragile') NOT NULL,
 weight DOUBLE NULL,
 tiny TINYINT UNSIGNED NULL
)"""

# Like an application's rows: some columns NULL in whole batches (note, cancelled_at), others
# mixed; JSON, decimals, microsecond datetimes, zero dates, blobs, enums and sets, utf8mb4 text.
FILL = """INSERT INTO orders (customer, note, cancelled_at, created_at, shipped, total, discount, attrs,
 photo, status, flags, weight, tiny)
SELECT CONCAT('cüstomer ', seq, ' 😀'), NULL, NULL,
 '2024-01-01 00:00:00.000001' + INTERVAL seq SECOND,
 IF(seq % 7 = 0, '0000-00-00', IF(seq % 3 = 0, NULL, '2024-02-01' + INTERVAL seq % 28 DAY)),
 seq * 1.25, IF(seq % 2 = 0, NULL, 0.0125),
 IF(seq % 5 = 0, NULL, JSON_OBJECT('seq', seq, 'tags', JSON_ARRAY('a', 'ü'), 'ok', TRUE)),
 IF(seq % 4 = 0, NULL, RANDOM_BYTES(1 + seq % 40)),
 ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'),
 ELT(1 + seq % 4, '', 'gift', 'gift,express', 'fragile'),
 IF(seq % 6 = 0, NULL, seq / 3), IF(seq % 9 = 0, NULL, seq % 256)
FROM seq_1_to_{rows}"""


def test_realistic_rows_all_go_through_the_bulk_protocol(any_move: MoveEnv) -> None:
    move = any_move
    move.src(REALISTIC, FILL.format(rows=2000))
    cfg = move.config(["orders"], move={"chunk_size": 500, "adaptive_chunk_size": False})
    first = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert first.returncode == 0, first.stderr[-3000:]
    copied = _caught_up(first.stderr)
    assert copied["bulk_batches"] >= 4 and copied["text_batches"] == 0, copied

    # The binlog's row images of the same kinds of rows: inserts (whole NULL columns again),
    # updates that set a column of the batch to NULL, and deletes.
    move.src(
        FILL.format(rows=300),
        "UPDATE orders SET note = NULL, attrs = JSON_SET(COALESCE(attrs, '{}'), '$.v', id), "
        "cancelled_at = NOW(6), status = 'cancelled', flags = 'gift,fragile' WHERE id % 10 = 1",
        "DELETE FROM orders WHERE id % 17 = 0",
    )
    second = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    applied = _caught_up(second.stderr)
    assert applied["bulk_batches"] > 0 and applied["text_batches"] == 0, applied
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"orders": "orders"})
