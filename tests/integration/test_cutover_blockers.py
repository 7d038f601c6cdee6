"""Look before you lock: a long transaction on a moved table holds the cutover, not the application.

Before each RENAME the daemon asks the source who holds a moved table (the METADATA_LOCK_INFO
plugin when installed, else any long InnoDB transaction, published only when its running
statement names a moved table) and does not issue the RENAME while such
a transaction is open. The application's queries on the moved tables therefore never queue behind
a waiting RENAME, and the outage figures report the lock wait apart.
"""

from __future__ import annotations

import json
import threading
import time

import pymysql
import pytest

from conftest import MoveEnv
from support import assert_tables_equal, renames_in_binlog

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64))"
HOLD_S = 4.0


def plugin_installed(move: MoveEnv) -> bool:
    rows = move.source.execute(
        "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
    )
    return bool(rows[0][0])


@pytest.mark.parametrize("method", ["metadata_lock_info", "innodb_trx"])
def test_a_long_transaction_holds_the_rename_not_the_application(move: MoveEnv, method: str) -> None:
    if method == "metadata_lock_info" and not plugin_installed(move):
        move.source.execute("INSTALL SONAME 'metadata_lock_info'")
    if method == "innodb_trx" and plugin_installed(move):
        move.source.execute("UNINSTALL SONAME 'metadata_lock_info'")
    for t in ("a", "b"):
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq, 'seed' FROM seq_1_to_2000")
    cfg = move.config(["a", "b"], move={"postpone_cutover": True, "cutover_lock_timeout_s": 3})
    proc = move.popen("run", "-c", str(cfg))
    log_path = move.workdir / "daemon.log"
    deadline = time.monotonic() + 120
    while "cutover postponed" not in log_path.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.1)

    holder = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    stop = threading.Event()
    try:
        # The application: one transaction holds a row of `a`; others keep writing `b`, timing each.
        holder.cursor().execute("BEGIN")
        holder.cursor().execute("SELECT * FROM a WHERE id = 1 FOR UPDATE")
        latencies: list[float] = []

        def probe() -> None:
            conn = pymysql.connect(
                unix_socket=move.source.socket, user="root", database=move.database, autocommit=True
            )
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                try:
                    conn.cursor().execute("UPDATE b SET k = k + 1 WHERE id = %s", (n % 2000 + 1,))
                except pymysql.err.ProgrammingError:
                    break  # renamed away: the cutover happened
                latencies.append(time.monotonic() - started)
                n += 1
                time.sleep(0.005)
            conn.close()

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        time.sleep(1.5)  # let the transaction age past cutover_blocker_min_age_s (1 s) before the release
        held = json.loads(move.cli("status", "--json", "-c", str(cfg)).stdout)
        assert held["waiting_kind"] == "postponed" and "tablemover cutover" in held["waiting_for"], held
        released_at = time.monotonic()
        assert move.cli("cutover", "-c", str(cfg)).returncode == 0
        while "cutover waits" not in log_path.read_text() and time.monotonic() - released_at < 30:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.05)
        log = log_path.read_text()
        assert "cutover waits" in log, log[-3000:]
        status = json.loads(move.cli("status", "--json", "-c", str(cfg)).stdout)
        assert status["state"] == "COPYING" and status["cutover_blocked_by"], status
        assert status["waiting_kind"] == "cutover_blocked", status
        assert status["waiting_for"].startswith("cutover waits for 1 source transaction"), status
        blocker = status["cutover_blocked_by"][0]
        if method == "metadata_lock_info":
            assert f"{move.database}.a" in blocker, blocker
            assert "idle in transaction" in blocker and "root@localhost" in blocker, blocker
        else:
            # Idle in transaction: the fallback cannot tell which tables it holds, so it waits
            # for it but publishes it only as a count (blockers.py).
            assert blocker.startswith("1 other transaction(s)") and "root" not in blocker, blocker
        assert move.src("SHOW TABLES LIKE '_a_moved'") == [], "no RENAME while the transaction is open"
        time.sleep(max(0.0, HOLD_S - (time.monotonic() - released_at)))
        holder.commit()
        holder.close()
        ended_at = time.monotonic()
        assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        stop.set()
        prober.join(timeout=10)

    finally:
        # A failed assertion must not leave the transaction open: the test's DROP DATABASE would
        # wait for its metadata lock for ever.
        stop.set()
        if holder.open:
            holder.close()
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert "RENAME timed out" not in log, "the RENAME must never have queued behind the blocker"
    assert renames_in_binlog(move) == 1
    assert latencies and max(latencies) < 1.0, f"an application write waited {max(latencies):.2f} s"
    outage = next(json.loads(line) for line in log.splitlines() if '"msg": "cutover outage"' in line)
    assert outage["rename_attempts"] == 1 and 0 <= outage["lock_wait_ms"] <= outage["outage_ms"], outage
    done_at = time.monotonic()
    assert done_at - ended_at < 30, "the move finishes within seconds once the transaction ends"
    assert_tables_equal(
        move.source, move.database, move.target, move.target_database, {"_a_moved": "a", "_b_moved": "b"}
    )
