"""Plain PyMySQL access to the drill's servers: binlog scans, the checkpoint's rows (no tablemover
code)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pymysql
import pymysql.cursors

from drill.common import Conn
from tablemover.local.mariadb import LocalPair, root_connection


def connect(socket_path: str, database: str | None = None, streaming: bool = False) -> Conn:
    """A root connection over a unix socket (the project's one helper for local servers)."""
    return root_connection(socket_path, database, streaming=streaming)


def query(socket_path: str, sql: str) -> list[tuple[Any, ...]]:
    """All rows of one statement."""
    conn = connect(socket_path)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


BinlogPos = tuple[str, int]


def binlog_position(socket_path: str) -> BinlogPos:
    """The source's current binlog file and offset."""
    row = query(socket_path, "SHOW MASTER STATUS")[0]
    return str(row[0]), int(row[1])


def scan_binlog(socket_path: str, db: str, since: BinlogPos, load_from: BinlogPos) -> tuple[list[str], int]:
    """(the RENAME statements naming ``db``'s tables, commits of row transactions after ``load_from``).

    Scans every binlog event from ``since`` (taken before the round's schema was created, so nothing
    of the round is missed) to the end. A round's binlog holds a few hundred thousand events; the
    ``mariadb`` command-line client lists them about twice as fast as PyMySQL parses them, so it is
    used when installed (Debian's mariadb-server brings it), PyMySQL otherwise.
    """
    marker = f"`{db}`.`"
    renames: list[str] = []
    commits = 0
    names = [str(r[0]) for r in query(socket_path, "SHOW BINARY LOGS") if str(r[0]) >= since[0]]
    client = shutil.which("mariadb") or shutil.which("mysql")
    for name in names:
        start = f" FROM {since[1]}" if name == since[0] else ""
        sql = f"SHOW BINLOG EVENTS IN '{name}'{start}"
        for pos, event_type, info in _binlog_events(client, socket_path, sql):
            if event_type == "Query" and "RENAME" in info.upper() and marker in info:
                renames.append(info)
            elif event_type == "Xid" and (name, pos) >= load_from:
                commits += 1
    return renames, commits


def _binlog_events(client: str | None, socket_path: str, sql: str) -> Iterator[tuple[int, str, str]]:
    """(position, event type, info) of each event ``sql`` (a SHOW BINLOG EVENTS) lists."""
    if client is None:
        conn = connect(socket_path, streaming=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                for _log, pos, event_type, _server, _end, info in cur:
                    yield int(pos), str(event_type), str(info)
        finally:
            conn.close()
        return
    # Batch mode: one tab-separated line an event, tabs and newlines inside a value escaped.
    cmd = [client, "--no-defaults", "-S", socket_path, "-uroot", "-B", "-N", "-e", sql]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            fields = line.rstrip("\n").split("\t", 5)
            if len(fields) == 6:
                yield int(fields[1]), fields[2], fields[5]
        err = proc.stderr.read() if proc.stderr is not None else ""
    if proc.returncode != 0:
        raise pymysql.err.OperationalError(0, f"{client} exited {proc.returncode}: {err.strip()[:300]}")


def count_renames(statements: list[str], db: str, table: str, to: str) -> int:
    """How many of ``statements`` rename ``db.table`` to ``db.to``."""
    pair = f"`{db}`.`{table}` TO `{db}`.`{to}`"
    return sum(1 for info in statements if pair in info)


# Every round's move keeps its checkpoint in the default state schema, under its own name.
STATE_DB = "_tablemover"


def move_name(dst_db: str) -> str:
    """A round's move name (its source schema) from its target schema ``<db>_dst``."""
    return dst_db.removesuffix("_dst")


def transitions(pair: LocalPair, dst_db: str) -> list[tuple[str, int]]:
    """(state, hook_attempts) of the checkpoint's transition rows, in order."""
    rows = query(
        pair.target.socket,
        f"SELECT state, hook_attempts FROM `{STATE_DB}`._tablemover_checkpoint "
        f"WHERE move_name='{move_name(dst_db)}' AND kind='transition' ORDER BY id",
    )
    return [(str(r[0]), int(r[1])) for r in rows]


def move_state(pair: LocalPair, dst_db: str) -> str:
    """The move's last committed state (its newest transition row on the target)."""
    rows = query(
        pair.target.socket,
        f"SELECT state FROM `{STATE_DB}`._tablemover_checkpoint "
        f"WHERE move_name='{move_name(dst_db)}' AND kind='transition' ORDER BY id DESC LIMIT 1",
    )
    return str(rows[0][0]) if rows else ""
