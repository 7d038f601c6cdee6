"""Tables with a secondary unique key: values moving between rows inside one batch apply exactly."""

from __future__ import annotations

import random

import pymysql

from conftest import MoveEnv
from support import assert_tables_equal, wait_for_log


def test_secondary_unique_values_moving_between_rows(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE u (id INT PRIMARY KEY, email VARCHAR(64) NOT NULL, n INT, UNIQUE KEY (email))",
        "INSERT INTO u SELECT seq, CONCAT('user', seq, '@example.com'), 0 FROM seq_1_to_300",
    )
    cfg = move.config(["u"], move={"postpone_cutover": True})
    proc = move.popen("run", "-c", str(cfg))
    log = move.workdir / "daemon.log"
    wait_for_log(move, "cutover postponed", proc)
    conn = pymysql.connect(unix_socket=move.source.socket, user="root", database=move.database)
    rnd = random.Random(7)
    try:
        with conn.cursor() as cur:
            for _ in range(200):
                # One transaction rotates the emails of three rows (a -> b -> c -> a), through a
                # parking value, and renumbers a fourth row's key: every change in one batch.
                a, b, c = rnd.sample(range(1, 301), 3)
                cur.execute("SELECT id, email FROM u WHERE id IN (%s, %s, %s) FOR UPDATE", (a, b, c))
                emails = dict(cur.fetchall())
                if len(emails) < 3:
                    conn.rollback()
                    continue
                cur.execute("UPDATE u SET email = CONCAT('parked-', id) WHERE id = %s", (a,))
                cur.execute("UPDATE u SET email = %s, n = n + 1 WHERE id = %s", (emails[a], c))
                cur.execute("UPDATE u SET email = %s WHERE id = %s", (emails[c], b))
                cur.execute("UPDATE u SET email = %s WHERE id = %s", (emails[b], a))
                d = rnd.randint(1, 300)
                cur.execute("UPDATE IGNORE u SET id = id + 1000 WHERE id = %s", (d,))
                cur.execute("DELETE FROM u WHERE id = %s", (rnd.randint(1, 300),))
                cur.execute(
                    "INSERT IGNORE INTO u VALUES (%s, %s, 0)", (rnd.randint(1, 300), f"new{rnd.random()}@x")
                )
                conn.commit()
    finally:
        conn.close()
    assert move.cli("cutover", "-c", str(cfg)).returncode == 0
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"_u_moved": "u"})
