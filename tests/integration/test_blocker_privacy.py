"""The blocker check publishes only what it knows holds a moved table, and that only as a digest.

The cutover's blocker check reads other sessions' statements from the source (PROCESSLIST /
INNODB_TRX). Without the metadata-lock plugin (MariaDB's default) the server does not say which
tables a transaction holds, so the fallback attributes a transaction to a moved table by the
statement it runs: that one is published (thread, user, age, table, statement digest, never a
literal); every other long transaction on the server is only counted, with nothing that
identifies it, although the cutover still waits for it (it may hold a moved table from an earlier
statement).

Each blocking statement waits on a named lock the test holds (GET_LOCK), so it is still running
whenever the daemon looks, for as long as the test needs, and ends when the test releases it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from typing import Any

import pymysql

from conftest import MoveEnv
from support import assert_tables_equal

SECRET = "sk_live_51HdTopSecretToken"
UNRELATED_SECRET = "unrelated_payroll_literal"


class Session:
    """A source session in a transaction that holds a row of ``table`` and then runs ``statement``,
    which waits for the named lock ``gate`` the test holds until :meth:`release`."""

    def __init__(self, move: MoveEnv, table: str, statement: str, gate: str) -> None:
        self.gate = gate
        self.gatekeeper = pymysql.connect(unix_socket=move.source.socket, user="root", autocommit=True)
        self.gatekeeper.cursor().execute("SELECT GET_LOCK(%s, 0)", (gate,))
        self.conn = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
        cur = self.conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        self.thread_id = int(cur.fetchone()[0])
        cur.execute("BEGIN")
        cur.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")
        self.runner = threading.Thread(target=cur.execute, args=(statement,), daemon=True)
        self.runner.start()

    def release(self) -> None:
        """Let the statement finish, end the transaction and the session."""
        if self.gatekeeper.open:
            self.gatekeeper.cursor().execute("SELECT RELEASE_LOCK(%s)", (self.gate,))
            self.gatekeeper.close()
        self.runner.join(timeout=60)
        if self.conn.open:
            self.conn.commit()
            self.conn.close()


def waiting_on_gates(move: MoveEnv, sessions: list[Session], min_age_s: int) -> bool:
    """Every session's statement waits on its gate and its transaction is older than ``min_age_s``."""
    ids = ", ".join(str(s.thread_id) for s in sessions)
    rows = move.source.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST p "
        "JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
        f"WHERE p.ID IN ({ids}) AND p.STATE = 'User lock' "
        f"AND TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) > {min_age_s}"
    )
    return int(rows[0][0]) == len(sessions)


def test_only_a_blocker_on_a_moved_table_is_published_and_no_literal(move: MoveEnv) -> None:
    installed = move.source.execute(
        "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
    )[0][0]
    if installed:
        move.source.execute("UNINSTALL SONAME 'metadata_lock_info'")  # the server-wide fallback
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(64))",
        "INSERT INTO a SELECT seq, 'seed' FROM seq_1_to_500",
        "CREATE TABLE payroll (id INT PRIMARY KEY, v VARCHAR(64))",  # the application's, not moved
        "INSERT INTO payroll SELECT seq, 'seed' FROM seq_1_to_5",
    )
    cfg = move.config(["a"], move={"postpone_cutover": True}, control={"http": "127.0.0.1:0"})
    proc = move.popen("run", "-c", str(cfg))
    log_path = move.workdir / "daemon.log"

    def wait_until(ready: Any, what: str) -> None:
        deadline = time.monotonic() + 120
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, (what, log_path.read_text()[-3000:])
            time.sleep(0.1)

    def blocked_by() -> list[str]:
        out = move.cli("status", "--json", "-c", str(cfg)).stdout
        return list(json.loads(out)["cutover_blocked_by"])

    sessions: list[Session] = []
    try:
        wait_until(lambda: "cutover postponed" in log_path.read_text(), "postponed")
        gate = f"tm_gate_{move.database}"
        moved = Session(
            move, "a", f"SELECT GET_LOCK('{gate}_a', 600), '{SECRET}' AS api_token, 4111111111111111 FROM a "
            "WHERE id = 1", f"{gate}_a"
        )  # fmt: skip
        sessions.append(moved)
        unrelated = Session(
            move, "payroll", f"UPDATE payroll SET v = '{UNRELATED_SECRET}' WHERE id = 2 AND "
            f"GET_LOCK('{gate}_p', 600)", f"{gate}_p"
        )  # fmt: skip
        sessions.append(unrelated)
        # Past cutover_blocker_min_age_s (1 s): both count as long transactions.
        wait_until(lambda: waiting_on_gates(move, sessions, 1), "both statements wait on their gates")
        assert move.cli("cutover", "-c", str(cfg)).returncode == 0
        wait_until(lambda: "cutover waits" in log_path.read_text(), "the cutover waits")
        status = move.cli("status", "--json", "-c", str(cfg)).stdout
        text_status = move.cli("status", "-c", str(cfg)).stdout
        listening = re.search(r'"http status listening", "address": "[^"]*:(\d+)"', log_path.read_text())
        assert listening, log_path.read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{listening.group(1)}/status", timeout=10) as response:
            http_status = response.read().decode()
        blockers = json.loads(status)["cutover_blocked_by"]
        assert len(blockers) == 2, blockers
        assert blockers[0].startswith(f"thread {moved.thread_id} (root@localhost)"), blockers
        shape = "SELECT GET_LOCK(?, ...), ? AS api_token, ? FROM a WHERE id = ?"
        assert f"on {move.database}.a: {shape}" in blockers[0], blockers
        assert blockers[1].startswith("1 other transaction(s)"), blockers

        # The one on the moved table ends: the cutover still waits for the other (it may hold a
        # moved table from an earlier statement), which is still published as a count only.
        moved.release()
        wait_until(lambda: len(blocked_by()) == 1, "the moved table's blocker is gone")
        left = blocked_by()
        assert left[0].startswith("1 other transaction(s)"), left
        assert move.src("SHOW TABLES LIKE '_a_moved'") == [], "no RENAME while a transaction may block it"
        unrelated.release()
        assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        for session in sessions:  # an open transaction would hold the test's DROP DATABASE
            session.release()
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert "SELECT GET_LOCK(?, ...), ? AS api_token" in log, "the log names the blocker's statement shape"
    published = {"status --json": status, "status": text_status, "/status": http_status, "log": log}
    for where, text in published.items():
        assert SECRET not in text and "4111111111111111" not in text, f"{where} published a literal"
        for hidden in (UNRELATED_SECRET, "payroll", f"thread {unrelated.thread_id} "):
            assert hidden not in text, f"{where} published the unrelated session ({hidden}): {text[-2000:]}"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
