"""Another session's statement is published only as a digest: no literal of it leaves the daemon.

The cutover's blocker check reads other sessions' statements from the source (PROCESSLIST /
INNODB_TRX). Without the metadata-lock plugin it sees every long transaction on the server,
whatever it runs, so a root session's ``... 'sk_live_...'`` must not reach ``status``, the log or
``/status`` as it is: only its shape does.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pymysql

from conftest import MoveEnv
from support import assert_tables_equal

SECRET = "sk_live_51HdTopSecretToken"


def test_a_blockers_secret_literal_is_never_published(move: MoveEnv) -> None:
    installed = move.source.execute(
        "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'"
    )[0][0]
    if installed:
        move.source.execute("UNINSTALL SONAME 'metadata_lock_info'")  # the server-wide fallback
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(64))",
        "INSERT INTO a SELECT seq, 'seed' FROM seq_1_to_500",
    )
    cfg = move.config(["a"], move={"postpone_cutover": True}, control={"http": "127.0.0.1:0"})
    proc = move.popen("run", "-c", str(cfg))
    log_path = move.workdir / "daemon.log"

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 120
        while text not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)

    holder = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    sleeper: threading.Thread | None = None
    try:
        wait_for("cutover postponed")
        cur = holder.cursor()
        cur.execute("BEGIN")
        cur.execute("SELECT * FROM a WHERE id = 1 FOR UPDATE")
        # The statement the blocker check will see: still running while the cutover looks.
        sleeper = threading.Thread(
            target=cur.execute, args=(f"SELECT SLEEP(8) AS pause, '{SECRET}' AS api_token, 4111111111111111",)
        )
        sleeper.start()
        time.sleep(1.5)  # past cutover_blocker_min_age_s (1 s), so the transaction counts as a blocker
        assert move.cli("cutover", "-c", str(cfg)).returncode == 0
        wait_for("cutover waits")
        status = move.cli("status", "--json", "-c", str(cfg)).stdout
        text_status = move.cli("status", "-c", str(cfg)).stdout
        listening = re.search(r'"http status listening", "address": "[^"]*:(\d+)"', log_path.read_text())
        assert listening, log_path.read_text()[-3000:]
        port = int(listening.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as response:
            http_status = response.read().decode()
        blockers = json.loads(status)["cutover_blocked_by"]
        assert blockers and "SELECT SLEEP(?) AS pause, ? AS api_token, ?" in blockers[0], blockers
        sleeper.join(timeout=60)
        holder.commit()
        assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        if sleeper is not None:
            sleeper.join(timeout=60)
        holder.close()
        if proc.poll() is None:
            proc.kill()
    for where, text in (("status --json", status), ("status", text_status), ("/status", http_status)):
        assert SECRET not in text and "4111111111111111" not in text, f"{where} published a literal: {text}"
    log = log_path.read_text()
    assert "SELECT SLEEP(?)" in log, "the log names the blocker's statement shape"
    assert SECRET not in log and "4111111111111111" not in log, "the log published a literal"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_a_moved": "a"})
