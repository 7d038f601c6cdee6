"""Helpers of the fault suite: polling waits, a write load that survives server restarts, and the
daemon's connections by role (to KILL them one at a time).

Roles come from what each connection of the daemon's process ran (performance_schema, switched on
for ``fault_pair`` only): a connection's last statements say whether it is the writer, a copier,
the lag tracker, a sampler, the move lock or the binlog stream.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pymysql

from conftest import MoveEnv
from support import WriteLoad
from tablemover.local.mariadb import LocalMariaDB

T = TypeVar("T")

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), KEY (k))"
# Errors after which the write load's connection is gone (server restarting, connection killed).
CONNECTION_LOST = frozenset({1053, 1077, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
RETRY_LINE = "transient error; retrying"


def seed(move: MoveEnv, tables: tuple[str, ...] = ("a", "b"), rows: int = 20_000) -> None:
    """Create ``tables`` in the shape WriteLoad writes and fill each with ``rows`` rows."""
    for t in tables:
        move.src(TABLE.format(name=t), f"INSERT INTO {t} SELECT seq, seq % 97, 'seed' FROM seq_1_to_{rows}")


def renamed(tables: tuple[str, ...] = ("a", "b")) -> dict[str, str]:
    """Source table after the cutover -> target table, for assert_tables_equal."""
    return {f"_{t}_moved": t for t in tables}


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def log_text(move: MoveEnv) -> str:
    """Everything the daemons of this test logged so far."""
    path = move.workdir / "daemon.log"
    return path.read_text(errors="replace") if path.exists() else ""


def log_count(move: MoveEnv, text: str) -> int:
    """How many log lines contain ``text``."""
    return sum(1 for line in log_text(move).splitlines() if text in line)


def wait_logged(move: MoveEnv, text: str, count: int = 1, timeout: float = 60) -> None:
    """Wait until ``text`` appears on ``count`` log lines; fail with the log's tail."""
    try:
        wait_until(f"{count}x {text!r} in the log", lambda: log_count(move, text) >= count, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_text(move)[-4000:]}") from None


def retries_logged(move: MoveEnv) -> list[dict[str, Any]]:
    """The daemon's retry lines (JSON), in order."""
    out = []
    for line in log_text(move).splitlines():
        if RETRY_LINE in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"msg": line})
    return out


def latest_checkpoint(move: MoveEnv) -> tuple[str, int] | None:
    """(state, rows copied) of the newest committed checkpoint row, read as root on the target."""
    try:
        rows = move.target.execute(
            f"SELECT state, progress FROM `{move.state_database}`._tablemover_checkpoint "
            f"WHERE move_name = '{move.name}' AND kind <> 'owner' ORDER BY seq DESC, id DESC LIMIT 1"
        )
    except pymysql.err.MySQLError:  # not created yet, or the target is restarting
        return None
    if not rows:
        return None
    progress = json.loads(str(rows[0][1]))
    return str(rows[0][0]), sum(int(p.get("rows", 0)) for p in progress.values())


def states(move: MoveEnv) -> list[str]:
    """The states of this move's transition rows, in order (other moves may share the table)."""
    rows = move.target.execute(
        f"SELECT state FROM `{move.state_database}`._tablemover_checkpoint "
        f"WHERE kind = 'transition' AND move_name = '{move.name}' ORDER BY id"
    )
    return [str(r[0]) for r in rows]


def wait_copied(move: MoveEnv, rows: int, timeout: float = 60) -> int:
    """Wait until at least ``rows`` rows are committed on the target while still COPYING."""

    def probe() -> int | None:
        cp = latest_checkpoint(move)
        if cp is not None and cp[0] not in ("PREPARED", "COPYING", "ABORTED"):  # ABORTED: not resumed yet
            raise AssertionError(f"the move left COPYING before {rows} rows were copied: {cp}")
        return cp[1] if cp is not None and cp[0] == "COPYING" and cp[1] >= rows else None

    return wait_until(f"{rows} rows copied", probe, timeout)


def wait_state(move: MoveEnv, state: str, timeout: float = 60) -> None:
    """Wait until the newest checkpoint row is in ``state``."""
    wait_until(f"state {state}", lambda: (latest_checkpoint(move) or ("", 0))[0] == state, timeout)


def status(move: MoveEnv, cfg: Path | str) -> dict[str, Any]:
    """``tablemover status --json`` (from the daemon when one answers on the socket)."""
    result = move.cli("status", "--json", "-c", str(cfg), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def finish(proc: Any, move: MoveEnv, timeout: float = 180) -> None:
    """Wait for the daemon; it must exit 0."""
    code = proc.wait(timeout=timeout)
    assert code == 0, f"daemon exited {code}:\n{log_text(move)[-5000:]}"


class ReconnectingWriteLoad(WriteLoad):
    """WriteLoad whose connection comes back after a source restart or a KILL (it keeps writing)."""

    def _run(self) -> None:
        import random

        rnd = random.Random(self.seed)
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(
                        unix_socket=self.server.socket, user="root", database=self.database, autocommit=False
                    )
                for _ in range(rnd.randint(1, 5)):
                    self._one(conn.cursor(), rnd)
                conn.commit()
            except pymysql.err.MySQLError as exc:
                code = exc.args[0] if exc.args else 0
                if conn is not None and code not in CONNECTION_LOST:
                    try:
                        conn.rollback()
                    except pymysql.err.MySQLError:
                        code = 2013
                if code in CONNECTION_LOST or isinstance(exc, pymysql.err.InterfaceError):
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.05)  # the server is restarting: try again shortly
                elif code not in (1062, 1213, 1205):
                    self.errors.append(str(exc))
            if self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            conn.close()


# --- the daemon's connections ---------------------------------------------------------------------


@dataclass(frozen=True)
class Conn:
    """One connection of the daemon on a server."""

    id: int
    role: str
    server: str  # "source" or "target"


ROLE_PATTERNS = (  # first match wins, over the connection's recent statements
    # The writer proves it holds the move lock (IS_USED_LOCK) before each COMMIT; the lock's own
    # connection is autocommit and never sends COMMIT.
    ("writer", re.compile(r"\A(?=[\s\S]*IS_USED_LOCK)(?=[\s\S]*^\s*COMMIT\b)", re.I | re.M)),
    ("lock", re.compile(r"GET_LOCK|IS_USED_LOCK|RELEASE_LOCK", re.I)),
    ("copier", re.compile(r"LOCK IN SHARE MODE", re.I)),
    ("sampler", re.compile(r"Threads_running", re.I)),
    (
        "writer",
        re.compile(r"max_allowed_packet|_tablemover_checkpoint|^\s*(INSERT|REPLACE|DELETE)", re.I | re.M),
    ),
)
# The lag tracker reads the position ten times a second; the control connection once, at prepare.
LAG = re.compile(r"gtid_binlog_pos|gtid_executed", re.I)


def daemon_connections(server: LocalMariaDB, role_server: str, pid: int) -> list[Conn]:
    """The connections of daemon ``pid`` on ``server``, each with the role its statements show."""
    rows = server.execute(
        "SELECT p.ID, p.COMMAND, a.ATTR_VALUE, "
        "(SELECT GROUP_CONCAT(h.SQL_TEXT SEPARATOR '\\n') "
        " FROM performance_schema.events_statements_history h WHERE h.THREAD_ID = t.THREAD_ID) "
        "FROM information_schema.PROCESSLIST p "
        "JOIN performance_schema.threads t ON t.PROCESSLIST_ID = p.ID "
        "JOIN performance_schema.session_connect_attrs a "
        "  ON a.PROCESSLIST_ID = p.ID AND a.ATTR_NAME = '_client_name' "
        "WHERE p.ID IN (SELECT PROCESSLIST_ID FROM performance_schema.session_connect_attrs "
        f"              WHERE ATTR_NAME = '_pid' AND ATTR_VALUE = '{pid}') "
        "ORDER BY p.ID"
    )
    found = []
    for conn_id, command, client, history in rows:
        text = str(history or "")
        if command == "Binlog Dump":
            role = "stream"
        elif client == "pymysql":
            role = "stream-ctl"  # mysql-replication's second connection (table metadata)
        else:
            role = next((name for name, pattern in ROLE_PATTERNS if pattern.search(text)), "")
            role = role or ("lag" if len(LAG.findall(text)) >= 3 else "control")
        found.append(Conn(int(str(conn_id)), role, role_server))
    return found


def kill_connection(server: LocalMariaDB, conn_id: int) -> bool:
    """KILL CONNECTION ``conn_id``; False when it was already gone."""
    try:
        server.execute(f"KILL CONNECTION {conn_id}")
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] == 1094:  # unknown thread id
            return False
        raise
    return True
