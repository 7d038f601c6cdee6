"""Least privilege on real servers (issue 26, point 5): a move whose user holds ONLY the grants
`tablemover check` prints runs through preflight, copy and cutover to DONE (and through a rollback
window and a rollback), with rows compared source against target; `check` prints that set whatever
the other checks say, its "Fix:" hints are table-level, and far more than needed is warned about."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import MoveEnv
from support import WriteLoad, assert_tables_equal, rows, wait_for_log
from tablemover.local.mariadb import LocalMariaDB

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY AUTO_INCREMENT, k INT NOT NULL, v VARCHAR(64), KEY (k))"
STATES = ["PREPARED", "COPYING", "CUTOVER_STARTED", "RENAMED", "DRAINED", "HOOK_FIRED", "DONE"]


@dataclass
class Account:
    """A user created on both servers with no privilege at all, dropped after the test."""

    name: str
    password: str

    @property
    def sql(self) -> str:
        """``'name'@'%'`` as GRANT names it."""
        return f"'{self.name}'@'%'"

    def section(self) -> dict[str, Any]:
        """The [source] / [target] keys that make the move use this user."""
        return {"user": self.name, "password": self.password}


@pytest.fixture
def least(move: MoveEnv) -> Iterator[Account]:
    """A fresh user without grants on both servers of the pair."""
    account = Account(f"lp_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}")
    for server in (move.source, move.target):
        server.execute(f"CREATE USER {account.sql} IDENTIFIED BY '{account.password}'")
    yield account
    for server in (move.source, move.target):
        server.execute(f"DROP USER IF EXISTS {account.sql}")


def printed_grants(stdout: str) -> dict[str, list[str]]:
    """The runnable GRANT statements `check` printed, per server (``source``, ``target``)."""
    found: dict[str, list[str]] = {"source": [], "target": []}
    side = ""
    for line in stdout.splitlines():
        heading = re.match(r"-- on the (source|target)\b", line)
        if heading:
            side = heading[1]
        elif line.startswith("GRANT ") and side:
            found[side].append(line)
    return found


def apply_grants(move: MoveEnv, account: Account, grants: dict[str, list[str]]) -> None:
    """Run the printed statements, account filled in, as root on their server."""
    for side, server in (("source", move.source), ("target", move.target)):
        statements = [g.replace("<account>", account.sql) for g in grants[side]]
        assert statements and all(account.sql in s for s in statements), statements
        server.execute(*statements)


def show_grants(server: LocalMariaDB, account: Account) -> set[str]:
    """SHOW GRANTS of the account as the server reports it, minus the USAGE (login) line."""
    lines = {str(r[0]) for r in server.execute(f"SHOW GRANTS FOR {account.sql}")}
    return {line for line in lines if not line.startswith("GRANT USAGE ON *.*")}


def state_rows(move: MoveEnv, server: LocalMariaDB) -> list[str]:
    """The transition states of this move's checkpoint rows in its state schema on ``server``."""
    database = move.state_database
    found = server.execute(
        f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{database}' "
        "AND TABLE_NAME='_tablemover_checkpoint'"
    )
    if not found[0][0]:
        return []
    result = server.execute(
        f"SELECT state FROM `{database}`._tablemover_checkpoint WHERE move_name='{move.name}' "
        "AND kind='transition' ORDER BY id"
    )
    return [str(r[0]) for r in result]


def escaped(database: str) -> str:
    """A schema name as a database-level grant names exactly it (``_`` is a wildcard there)."""
    return database.replace("_", "\\_")


def seed(move: MoveEnv, tables: tuple[str, ...], count: int) -> None:
    for t in tables:
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} (id, k, v) SELECT seq, seq % 97, CONCAT('seed-', seq) FROM seq_1_to_{count}",
        )


def check_then_grant(move: MoveEnv, account: Account, cfg: Path) -> dict[str, list[str]]:
    """`check` with no grants: it fails, yet prints the least set; grant exactly that; `check` passes
    and prints the same set again."""
    bare = move.cli("check", "-c", str(cfg))
    assert bare.returncode == 2, bare.stdout + bare.stderr[-3000:]
    grants = printed_grants(bare.stdout)
    # The Fix: hint of the failed privilege check is table-level too (no `db`.* on the source).
    assert "lacks privileges tablemover needs" in bare.stderr, bare.stderr[-3000:]
    assert f"ON `{move.database}`.`a` TO" in bare.stderr
    assert f"`{move.database}`.*" not in bare.stderr.replace("\\_", "_")
    apply_grants(move, account, grants)
    granted = move.cli("check", "-c", str(cfg))
    assert granted.returncode == 0, granted.stdout + granted.stderr[-3000:]
    assert "preflight passed" in granted.stdout
    assert printed_grants(granted.stdout) == grants
    assert "holds far more than a move needs" not in granted.stderr
    return grants


def test_a_move_with_only_the_printed_grants_runs_to_done(move: MoveEnv, least: Account) -> None:
    seed(move, ("a", "b"), 3000)
    # A counter above the rows (deleted top rows, a bulk reservation): the cutover must ALTER the
    # target's up to it, which the copy alone does not do.
    move.src("ALTER TABLE a AUTO_INCREMENT = 1000000")
    cfg = move.config(["a", "b"], move={"chunk_size": 400}, source=least.section(), target=least.section())
    grants = check_then_grant(move, least, cfg)
    db, dst = move.database, move.target_database
    assert grants["source"] == [
        "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <account>;",
        f"GRANT SELECT, DROP, ALTER ON `{db}`.`a` TO <account>;",
        f"GRANT SELECT, INSERT, CREATE, DROP ON `{db}`.`_a_moved` TO <account>;",
        f"GRANT SELECT, DROP, ALTER ON `{db}`.`b` TO <account>;",
        f"GRANT SELECT, INSERT, CREATE, DROP ON `{db}`.`_b_moved` TO <account>;",
    ]
    assert grants["target"] == [
        # the target schema does not exist yet: the daemon creates it
        f"GRANT CREATE ON `{escaped(dst)}`.* TO <account>;",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `{dst}`.`a` TO <account>;",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `{dst}`.`b` TO <account>;",
        f"GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `{escaped(move.state_database)}`.* TO <account>;",
    ]
    # The servers hold exactly those grants for the user, nothing else.
    assert len(show_grants(move.source, least)) == len(grants["source"])
    assert len(show_grants(move.target, least)) == len(grants["target"])

    load = WriteLoad(move.source, db, ["a", "b"], key_space=3000, pause_s=0.002).start()
    try:
        run = move.cli("run", "-c", str(cfg))
    finally:
        load.stop()
    assert run.returncode == 0, run.stderr[-4000:]
    assert load.ops > 0 and all("doesn't exist" in e for e in load.errors), load.errors[:3]
    assert_tables_equal(move.source, db, move.target, dst, {"_a_moved": "a", "_b_moved": "b"})
    assert state_rows(move, move.target) == STATES
    # The checkpoint is in the state schema, not beside the application's tables.
    assert {str(r[0]) for r in move.tgt("SHOW TABLES")} == {"a", "b"}
    # The AUTO_INCREMENT counter was carried over (ALTER on the target table).
    counter = (
        "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA='{}' AND TABLE_NAME='{}'"
    )
    src_next = move.source.execute(counter.format(db, "_a_moved"))[0][0]
    dst_next = move.target.execute(counter.format(dst, "a"))[0][0]
    assert int(dst_next) >= int(src_next) >= 1000000

    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout + verify.stderr[-3000:]
    # A grant taken away later is bad input with the way out (exit 2), not "a bug" (exit 1).
    move.source.execute(f"REVOKE SELECT ON `{db}`.`_a_moved` FROM {least.sql}")
    denied = move.cli("verify", "-c", str(cfg))
    assert denied.returncode == 2, denied.stdout + denied.stderr[-3000:]
    assert "lack of a privilege" in denied.stderr and "tablemover check" in denied.stderr, denied.stderr
    assert "a bug" not in denied.stderr, denied.stderr
    move.source.execute(f"GRANT SELECT ON `{db}`.`_a_moved` TO {least.sql}")
    cleanup = move.cli("cleanup", "-c", str(cfg), "--drop-source", "--yes")
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr[-3000:]
    assert move.src("SHOW TABLES") == []
    assert state_rows(move, move.target) == []
    assert {str(r[0]) for r in move.tgt("SHOW TABLES")} == {"a", "b"}


def test_deferred_indexes_need_no_grant_beyond_the_printed_ones(move: MoveEnv, least: Account) -> None:
    # The ALTER that adds them needs ALTER, CREATE and INSERT on the table: already in the set.
    seed(move, ("a",), 2000)
    cfg = move.config(
        ["a"], move={"defer_secondary_indexes": True}, source=least.section(), target=least.section()
    )
    check_then_grant(move, least, cfg)
    run = move.cli("run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "deferred indexes added" in run.stderr
    assert state_rows(move, move.target) == STATES
    keys = move.tgt(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA=DATABASE() AND TABLE_NAME='a'"
    )
    assert {str(r[0]) for r in keys} == {"PRIMARY", "k"}


def test_discard_with_only_the_printed_grants(move: MoveEnv, least: Account) -> None:
    """`discard` before the cutover (DROP on the target tables, the state rows) needs nothing more."""
    seed(move, ("a",), 500)
    cfg = move.config(["a"], source=least.section(), target=least.section())
    check_then_grant(move, least, cfg)
    stopped = move.cli("run", "-c", str(cfg), "--stop-before-cutover")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, {"a": "a"})
    discard = move.cli("discard", "-c", str(cfg), "--yes")
    assert discard.returncode == 0, discard.stdout + discard.stderr[-3000:]
    assert move.tgt("SHOW TABLES") == []
    assert [str(r[0]) for r in move.src("SHOW TABLES")] == ["a"]
    assert state_rows(move, move.target) == []


def test_rollback_window_with_only_the_printed_grants(move: MoveEnv, least: Account) -> None:
    seed(move, ("a",), 1500)
    cfg = move.config(
        ["a"],
        move={"chunk_size": 300, "rollback_window_s": 600},
        source=least.section(),
        target=least.section(),
    )
    grants = check_then_grant(move, least, cfg)
    db, dst = move.database, move.target_database
    assert grants["source"][1:] == [
        f"GRANT SELECT, INSERT, CREATE, DROP, ALTER ON `{db}`.`a` TO <account>;",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `{db}`.`_a_moved` TO <account>;",
        f"GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `{escaped(move.state_database)}`.* TO <account>;",
    ]
    assert grants["target"][0] == "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <account>;"
    assert f"GRANT INSERT, CREATE ON `{dst}`.`_a_rolledback` TO <account>;" in grants["target"]

    daemon = move.popen("run", "-c", str(cfg))
    try:
        wait_for_log(move, "rollback window open", daemon)
        # The application writes to the target; the reverse feed carries it into the renamed source.
        move.tgt(
            "INSERT INTO a (k, v) VALUES (1, 'after cutover'), (2, 'after cutover')",
            "UPDATE a SET v = 'changed on target' WHERE id <= 10",
            "DELETE FROM a WHERE id BETWEEN 11 AND 20",
        )
        deadline = time.monotonic() + 120
        while rows(move.source, db, "_a_moved") != rows(move.target, dst, "a"):
            assert daemon.poll() is None, "the daemon ended while the window was open"
            assert time.monotonic() < deadline, "the reverse feed did not carry the target's writes back"
            time.sleep(0.1)
        rollback = move.cli("rollback", "-c", str(cfg), timeout=300)
        assert rollback.returncode == 0, rollback.stdout + rollback.stderr[-3000:]
        daemon.wait(timeout=120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
    assert daemon.returncode == 0, (move.workdir / "daemon.log").read_text()[-4000:]
    assert_tables_equal(move.source, db, move.target, dst, {"a": "_a_rolledback"})
    assert state_rows(move, move.target)[-1] == "ROLLED_BACK"
    cleanup = move.cli("cleanup", "-c", str(cfg))
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr[-3000:]


def test_check_warns_about_far_more_than_needed(move: MoveEnv) -> None:
    """A user with ALL on *.* passes, with a warning naming that grant and the least set instead."""
    seed(move, ("a",), 10)
    name = f"lp_all_{uuid.uuid4().hex[:8]}"
    account = Account(name, "pw-all")
    for server in (move.source, move.target):
        server.execute(
            f"CREATE USER {account.sql} IDENTIFIED BY 'pw-all'", f"GRANT ALL ON *.* TO {account.sql}"
        )
    try:
        cfg = move.config(["a"], source=account.section(), target=account.section())
        result = move.cli("check", "-c", str(cfg))
    finally:
        for server in (move.source, move.target):
            server.execute(f"DROP USER IF EXISTS {account.sql}")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "holds far more than a move needs" in line]
    assert len(warnings) == 2, result.stderr[-3000:]
    assert all("ALL PRIVILEGES ON *.*" in w for w in warnings)
    assert any(f"GRANT SELECT, DROP, ALTER ON `{move.database}`.`a` TO" in w for w in warnings)
    assert (
        printed_grants(result.stdout)["source"][1]
        == f"GRANT SELECT, DROP, ALTER ON `{move.database}`.`a` TO <account>;"
    )


def test_check_prints_the_grants_when_a_server_is_unreachable(move: MoveEnv, least: Account) -> None:
    cfg = move.config(["a"], source=least.section(), target={**least.section(), "port": 1})
    result = move.cli("check", "-c", str(cfg), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    grants = printed_grants(result.stdout)
    assert grants["source"] and grants["target"], result.stdout
    # the source was read (its flavour's names); the target, unreachable, is assumed not to hold
    # the target schema yet
    assert grants["source"][0] == "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <account>;"
    assert grants["target"][0] == f"GRANT CREATE ON `{escaped(move.target_database)}`.* TO <account>;"
    assert grants["target"][-1] == (
        f"GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `{escaped(move.state_database)}`.* TO <account>;"
    )
