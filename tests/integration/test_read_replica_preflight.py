"""Preflight of ``[replica]`` (issue #24) on real servers: a replica the move cannot read from makes
`tablemover check` and `tablemover run` exit 2 with the fix, before anything exists on the target.

Each case breaks the trio's replica in one way an operator could (its SQL thread stopped, a
replication filter, the moved table altered on the replica only, [replica] naming the target) and
puts it right afterwards; log_slave_updates, ROW/FULL and the MySQL commit-order rule need a
restart or another flavor and are judged by the unit tests of the same pure function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from test_read_replica import seed
from test_replica_throttle import caught_up

from conftest import MoveEnv, ReadTrio
from tablemover.local.mariadb import MOVER_USER, LocalMariaDB, replicate


@contextmanager
def sql_thread_stopped(replica: LocalMariaDB, move: MoveEnv) -> Iterator[None]:
    caught_up(replica, move.source)
    replica.execute("STOP SLAVE SQL_THREAD")
    try:
        yield
    finally:
        replica.execute("START SLAVE SQL_THREAD")


@contextmanager
def filtered(replica: LocalMariaDB, move: MoveEnv) -> Iterator[None]:
    # Replication filters can only change while the slave threads are stopped.
    replica.execute("STOP SLAVE", "SET GLOBAL replicate_wild_ignore_table = 'nosuchdb.%'", "START SLAVE")
    try:
        yield
    finally:
        replica.execute("STOP SLAVE", "SET GLOBAL replicate_wild_ignore_table = ''", "START SLAVE")


@contextmanager
def altered_on_the_replica(replica: LocalMariaDB, move: MoveEnv) -> Iterator[None]:
    caught_up(replica, move.source)
    alter = f"ALTER TABLE `{move.database}`.a MODIFY v VARCHAR(8)"
    replica.execute("SET SESSION sql_log_bin = 0", alter)
    try:
        yield
    finally:
        replica.execute("SET SESSION sql_log_bin = 0", alter.replace("VARCHAR(8)", "VARCHAR(64)"))


@contextmanager
def without_binlog_dump(replica: LocalMariaDB, move: MoveEnv) -> Iterator[None]:
    revoke = f"REVOKE REPLICATION SLAVE ON *.* FROM '{MOVER_USER}'@'%'"
    replica.execute("SET SESSION sql_log_bin = 0", revoke)
    try:
        yield
    finally:
        replica.execute(
            "SET SESSION sql_log_bin = 0", revoke.replace("REVOKE", "GRANT").replace("FROM", "TO")
        )


CASES = {
    "sql_thread_stopped": (sql_thread_stopped, ["cannot be read from now", "SQL thread", "START SLAVE"]),
    "filtered": (filtered, ["replicates with filters", "Replicate_Wild_Ignore_Table = nosuchdb.%"]),
    "privilege": (
        without_binlog_dump,
        [
            "lacks privileges tablemover needs: REPLICATION SLAVE on *.* (the binlog stream",
            "GRANT REPLICATION SLAVE ON *.* TO",
        ],
    ),
    "altered": (
        altered_on_the_replica,
        ["is defined differently on replica", "column v: primary varchar(64)", "replica varchar(8)"],
    ),
}


def target_is_untouched(move: MoveEnv) -> None:
    databases = {str(r[0]) for r in move.target.execute("SHOW DATABASES")}
    assert move.target_database not in databases, databases
    assert move.state_database not in databases, databases


@pytest.mark.parametrize("case", list(CASES))
def test_an_unusable_replica_is_refused_before_anything_changes(
    read_move: MoveEnv, read_trio: ReadTrio, case: str
) -> None:
    move = read_move
    replica = read_trio.replica
    breakage, needles = CASES[case]
    seed(move, a=200)
    caught_up(replica, move.source)
    cfg = move.config(["a"])
    at = f"replica 127.0.0.1:{replica.port}"
    with breakage(replica, move):
        for command in ("check", "run"):
            result = move.cli(command, "-c", str(cfg), timeout=120)
            out = result.stdout + result.stderr
            assert result.returncode == 2, (command, result.returncode, out[-3000:])
            assert "Traceback" not in out, out[-3000:]
            for needle in [at, *needles]:
                assert needle in result.stderr, f"{command}: {needle!r} not in:\n{result.stderr}"
            target_is_untouched(move)
    # Put right, the same config passes.
    caught_up(replica, move.source)
    checked = move.cli("check", "-c", str(cfg), timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    # The least grants it prints name the replica's too.
    replica_part = checked.stdout.split(f"-- on the {at} ", 1)[1]
    assert "GRANT REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR ON *.* TO <account>;" in replica_part
    assert f"GRANT SELECT ON `{move.database}`.`a` TO <account>;" in replica_part


def test_a_replica_section_naming_the_target_is_refused(read_move: MoveEnv) -> None:
    """[replica] at the target under another name (localhost for 127.0.0.1): the address check of
    the config cannot see it, the server_id comparison does."""
    move = read_move
    seed(move, a=10)
    cfg = move.config(["a"], replica={"host": "localhost", "port": move.target.port})
    result = move.cli("check", "-c", str(cfg), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    assert f"replica localhost:{move.target.port} is the target" in result.stderr, result.stderr
    assert result.stderr.count("  - ") == 1, result.stderr  # the one answer that matters
    target_is_untouched(move)


def test_a_server_that_is_not_a_replica_is_refused(read_move: MoveEnv, read_trio: ReadTrio) -> None:
    """The replica with its replication reset is a server of its own: it would not see a write."""
    move = read_move
    replica = read_trio.replica
    seed(move, a=10)
    caught_up(replica, move.source)
    cfg = move.config(["a"])
    replica.execute("STOP SLAVE", "RESET SLAVE ALL")
    try:
        result = move.cli("check", "-c", str(cfg), timeout=120)
    finally:
        replicate(replica, move.source)
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    assert f"replica 127.0.0.1:{replica.port} is not a replica (SHOW SLAVE STATUS is empty)" in result.stderr
    assert "MASTER_USE_GTID=slave_pos" in result.stderr, result.stderr
    target_is_untouched(move)
