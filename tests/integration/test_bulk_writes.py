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
        # Every 100th row holds an unsigned value above 2^63 - 1: its batch goes as text.
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
        assert copied["text_batches"] >= 1, copied  # the batches holding 2^64 - 1 - n went as text
        # Every row changes: one binlog batch of ~16 MB of after-images (REPLACE).
        move.src("UPDATE w SET b = REVERSE(b), t = CONCAT(t, 'x')")
        second = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert second.returncode == 0, second.stderr[-3000:]
        assert _caught_up(second.stderr)["bulk_batches"] >= 16, second.stderr[-2000:]
    finally:
        move.target.execute(f"SET GLOBAL max_allowed_packet = {int(str(original))}")
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"w": "w"})
