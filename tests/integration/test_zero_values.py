"""Zero TIMESTAMP and YEAR 0000 reach the target as zero values, by the copy and by the binlog."""

from __future__ import annotations

import pytest

from conftest import MoveEnv
from support import assert_tables_equal, wait_for_log


@pytest.mark.parametrize("native", ["1", "0"])  # our row decoder, and the library's
def test_zero_timestamp_and_year_by_copy_and_binlog(move: MoveEnv, native: str) -> None:
    move.src(
        "CREATE TABLE z (id INT PRIMARY KEY, ts TIMESTAMP NULL, ts6 TIMESTAMP(6) NULL, y YEAR NULL)",
        "INSERT INTO z VALUES (1, 0, 0, 0), (2, '2024-05-06 07:08:09', '1970-01-01 00:00:01.5', 1901)",
    )
    cfg = move.config(["z"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg), env={"TABLEMOVER_NATIVE_DECODE": native})
    log = move.workdir / "daemon.log"
    wait_for_log(move, "cutover postponed", proc)
    move.src(
        "INSERT INTO z VALUES (3, 0, 0, 0), (4, '2038-01-19 03:14:07', '2001-02-03 04:05:06.654321', 2155)",
        "UPDATE z SET y = 0, ts = 0 WHERE id = 2",
        "UPDATE z SET y = 1999 WHERE id = 1",
    )
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_z_moved": "z"})
    assert move.tgt("SELECT y, ts FROM z WHERE id = 2") == [(0, None)] or move.tgt(
        "SELECT y, CAST(ts AS CHAR) FROM z WHERE id = 2"
    ) == [(0, "0000-00-00 00:00:00")]
