"""The pure judgements of reading from a replica (issue #24): is it fit, is it usable now, has it
executed everything the target holds (the barrier); and the preflight check's split between a new
move (refuse a replica it cannot read now) and a resume (warn, the daemon waits or falls back)."""

from __future__ import annotations

import socket
from typing import Any

import anyio

from tablemover.checkpoint import Checkpoint
from tablemover.cli import status_text
from tablemover.config import parse_config
from tablemover.db import ServerInfo
from tablemover.flavor import Flavor, parse_version
from tablemover.machine import State
from tablemover.preflight import PreflightContext
from tablemover.preflight.grant_plan import Side, replica_needs
from tablemover.preflight.read_replica import replica_fitness
from tablemover.readreplica import Identity, barrier_problem, configuration_problems, state_problem

SOURCE = Identity(1)
TARGET = Identity(2)
GOOD_VARIABLES = {
    "server_id": "5",
    "log_bin": "ON",
    "log_slave_updates": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
}


def status(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Master_Server_Id": 1,
        "Master_Host": "127.0.0.1",
        "Master_Port": 3306,
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes",
        "Using_Gtid": "Slave_Pos",
        "SQL_Delay": 0,
        "Seconds_Behind_Master": 0,
    }
    row.update(changes)
    return row


def problems(variables: dict[str, str] | None = None, slave: Any = "default") -> list[str]:
    merged = {**GOOD_VARIABLES, **(variables or {})}
    return configuration_problems(
        Flavor.MARIADB, merged, status() if slave == "default" else slave, SOURCE, TARGET
    )


def test_a_direct_gtid_replica_with_the_binlog_settings_is_fit() -> None:
    assert problems() == []


def test_the_target_and_the_source_themselves_are_refused() -> None:
    assert any("is the target" in p for p in problems({"server_id": "2"}))
    assert any("server_id of [source]" in p for p in problems({"server_id": "1"}))


def test_a_server_that_is_not_a_replica_or_replicates_from_elsewhere_is_refused() -> None:
    assert any("is not a replica" in p for p in problems(slave=None))
    assert problems(slave=status(Master_Server_Id=9)) != []


def test_settings_that_would_hide_or_reorder_writes_are_refused_with_their_fix() -> None:
    assert any("log_slave_updates = ON" in p for p in problems({"log_slave_updates": "OFF"}))
    assert any("log_bin" in p for p in problems({"log_bin": "OFF"}))
    assert any("binlog_format = ROW" in p for p in problems({"binlog_format": "MIXED"}))
    assert any("binlog_row_image = FULL" in p for p in problems({"binlog_row_image": "MINIMAL"}))
    assert any("filters" in p for p in problems(slave=status(Replicate_Do_DB="app")))
    assert any("delayed" in p for p in problems(slave=status(SQL_Delay=3600)))
    assert any("without GTID" in p for p in problems(slave=status(Using_Gtid="No")))


def test_mysql_parallel_workers_need_commit_order() -> None:
    variables = {**GOOD_VARIABLES, "gtid_mode": "ON", "replica_parallel_workers": "4"}
    mysql_status = status(Auto_Position=1)
    unordered = configuration_problems(Flavor.MYSQL, variables, mysql_status, SOURCE, TARGET)
    assert any("replica_preserve_commit_order" in p for p in unordered)
    ordered = {**variables, "replica_preserve_commit_order": "ON"}
    assert configuration_problems(Flavor.MYSQL, ordered, mysql_status, SOURCE, TARGET) == []


def test_a_stopped_thread_or_a_long_lag_makes_it_unusable_for_now() -> None:
    assert state_problem(status(), 60) == ""
    assert "SQL thread No" in state_problem(status(Slave_SQL_Running="No"), 60)
    assert "IO thread" in state_problem(status(Slave_IO_Running="Connecting"), 60)
    assert "lags 120 s" in state_problem(status(Seconds_Behind_Master=120), 60)


def test_the_barrier_holds_only_when_the_replica_covers_the_applied_position() -> None:
    assert barrier_problem(Flavor.MARIADB, "0-1-100", "") == ""
    assert barrier_problem(Flavor.MARIADB, "0-1-100", "0-1-100") == ""
    assert barrier_problem(Flavor.MARIADB, "0-1-101,1-1-5", "0-1-100") == ""
    assert "has not executed" in barrier_problem(Flavor.MARIADB, "0-1-99", "0-1-100")
    assert "has not executed" in barrier_problem(Flavor.MARIADB, "0-1-500", "0-1-100,1-1-5")
    assert "has not executed" in barrier_problem(Flavor.MARIADB, "", "0-1-100")


# --- the preflight check: a new move refuses a replica it cannot read now; a resume only warns ---


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def _context(checkpoint: Checkpoint | None, fallback: str = "wait") -> PreflightContext:
    text = (
        f'[move]\nname = "m"\ndatabase = "app"\ntables = ["a"]\nreplica_fallback = "{fallback}"\n'
        f'[replica]\nhost = "127.0.0.1"\nport = {_closed_port()}\nconnect_timeout_s = 2\n'
    )
    config = parse_config(text, origin="move.toml", env={})
    info = ServerInfo(
        parse_version("10.11.9-MariaDB"), 1, None, "h", 1, "/d", True, "ROW", "FULL", None, None
    )
    return PreflightContext(config, None, None, info, info, checkpoint)


def test_an_unreachable_replica_refuses_a_new_move() -> None:
    found = anyio.run(replica_fitness, _context(None))
    assert len(found) == 1 and "cannot be reached" in found[0], found
    assert found[0].startswith("replica 127.0.0.1:"), found


def test_an_unreachable_replica_does_not_stop_a_resume() -> None:
    for state in (State.COPYING, State.RENAMED):
        for fallback in ("wait", "source"):
            found = anyio.run(replica_fitness, _context(Checkpoint("m", state, "0-1-5"), fallback))
            assert found == [], (state, fallback, found)


def test_status_text_says_where_the_move_reads_and_the_replica_state() -> None:
    base = {"state": "COPYING", "rows_copied": 10, "tables": {}, "applied_gtid": "0-1-5"}
    on_replica = {
        **base,
        "reading_from": "replica db3:3306",
        "read_replica": {"lag_s": 0.25, "problem": "", "holds_copy": False},
    }
    assert "  reading from: replica db3:3306, lag 0.25 s" in status_text(on_replica, "orders")
    stopped = {
        **on_replica,
        "read_replica": {"lag_s": None, "problem": "SQL thread No", "holds_copy": True},
    }
    line = "  reading from: replica db3:3306, lag unknown (SQL thread No), holds the copy"
    assert line in status_text(stopped, "orders")
    fallen_back = {
        **base,
        "reading_from": "source db1:3306 (replica fallback: cannot be read)",
        "read_replica": {"lag_s": None, "problem": "cannot be read", "holds_copy": False},
    }
    assert "  reading from: source db1:3306 (replica fallback: cannot be read)" in status_text(
        fallen_back, "orders"
    )


def test_the_replica_user_needs_reads_only() -> None:
    move = parse_config('[move]\nname = "m"\ndatabase = "app"\ntables = ["a"]\n', origin="t", env={}).move
    mariadb = {
        (n.privileges, n.database, n.table) for n in replica_needs(move, parse_version("10.11.9-MariaDB"))
    }
    assert mariadb == {
        (("REPLICATION SLAVE",), None, None),
        (("REPLICATION CLIENT",), None, None),
        (("SLAVE MONITOR", "SUPER"), None, None),
        (("SELECT",), "app", "a"),
    }
    mysql = {(n.privileges, n.table) for n in replica_needs(move, parse_version("8.0.36"))}
    assert (("SLAVE MONITOR", "SUPER"), None) not in mysql  # MySQL: SHOW REPLICA STATUS is REPLICATION CLIENT
    assert (("LOCK TABLES", "UPDATE", "DELETE"), "a") in mysql  # FOR SHARE on 8.0.22+
    assert all(n.side is Side.SOURCE for n in replica_needs(move))  # the source cluster's server
    # Nothing that writes or renames: those stay on the primary.
    granted = {p for n in replica_needs(move, parse_version("8.0.36")) for p in n.privileges}
    assert not granted & {"ALTER", "DROP", "INSERT", "CREATE"}
