"""The retry policy: which errors are transient, the per-outage budget, the error a group reports."""

from __future__ import annotations

import pymysql
import pytest
from asyncmy.errors import InterfaceError, InternalError, OperationalError

from tablemover import gtid
from tablemover.db import ConnectError
from tablemover.errors import (
    BinlogPurged,
    MoveOwned,
    PreflightError,
    SafetyRefusal,
    StreamError,
    UnreproducibleEvent,
)
from tablemover.flavor import Flavor
from tablemover.ownership import LockLost, lock_name
from tablemover.preflight.binlog_retained import missing_ranges
from tablemover.preflight.server_id import clashes
from tablemover.retry import RetryBudget, is_transient, leaves, primary_error


@pytest.mark.parametrize("code", [1205, 1213, 2002, 2003, 2006, 2013, 1053, 1927, 1317, 4031])
def test_transient_driver_errors(code: int) -> None:
    assert is_transient(OperationalError(code, "x"))


@pytest.mark.parametrize("code", [1062, 1146, 1054, 1264, 1406, 1236, 1045, 0])
def test_final_driver_errors(code: int) -> None:
    assert not is_transient(OperationalError(code, "x"))
    assert not is_transient(InternalError(code, "x"))


def test_own_errors_are_final_except_connection_ones() -> None:
    assert is_transient(ConnectError("down"))
    assert is_transient(StreamError("binlog gone away 11 times"))
    assert is_transient(LockLost("lock connection lost"))
    for final in (
        SafetyRefusal("x"),
        UnreproducibleEvent("x"),
        BinlogPurged("x"),
        PreflightError("x"),
        MoveOwned("x"),
    ):
        assert not is_transient(final)


def test_socket_errors_are_transient_others_not() -> None:
    assert is_transient(ConnectionResetError("reset"))
    assert is_transient(EOFError())
    assert not is_transient(ValueError("bug"))
    assert not is_transient(AssertionError())


def test_primary_error_prefers_ours_then_a_coded_driver_error() -> None:
    cancelled = OperationalError(0, "Cancelled during execution")
    deadlock = OperationalError(1213, "Deadlock found")
    ours = UnreproducibleEvent("statement write")
    group = ExceptionGroup("g", [cancelled, ExceptionGroup("h", [deadlock])])
    assert primary_error(group) is deadlock
    assert primary_error(ExceptionGroup("g", [cancelled, deadlock, ours])) is ours
    assert primary_error(ExceptionGroup("g", [cancelled])) is cancelled
    assert leaves(group) == [cancelled, deadlock]
    assert primary_error(deadlock) is deadlock


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_backs_off_exponentially_and_gives_up_after_the_limit() -> None:
    clock = Clock()
    budget = RetryBudget(30, first_s=0.5, max_s=8, clock=clock)
    delays = []
    while (delay := budget.next_delay()) is not None:
        delays.append(delay)
        clock.now += delay
    assert delays[:5] == [0.5, 1, 2, 4, 8]
    assert all(d <= 8 for d in delays)
    assert sum(delays) == pytest.approx(30)
    assert budget.elapsed_s == pytest.approx(30)


def test_budget_refills_per_outage() -> None:
    clock = Clock()
    budget = RetryBudget(10, first_s=1, max_s=4, clock=clock)
    for _ in range(50):  # 50 separate faults, each followed by work that flowed
        delay = budget.next_delay()
        assert delay == 1
        clock.now += 60
        budget.refill()
    assert budget.attempts == 0


def test_missing_ranges_mariadb() -> None:
    pos = gtid.MariaDBPosition.parse
    assert missing_ranges(pos("0-1-100"), pos("0-1-90")) == []
    assert missing_ranges(pos("0-1-100"), pos("0-1-100")) == []
    assert missing_ranges(pos("0-1-100"), pos("0-1-150")) == ["domain 0: seq 101 to 150"]
    assert missing_ranges(pos("0-1-100"), pos("0-1-90,1-2-7")) == ["domain 1: seq 1 to 7"]
    assert missing_ranges(pos(""), pos("")) == []


def test_missing_ranges_mysql() -> None:
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    applied = gtid.parse_position(Flavor.MYSQL, f"{u}:1-100")
    assert missing_ranges(applied, gtid.parse_position(Flavor.MYSQL, f"{u}:1-50")) == []
    assert missing_ranges(applied, gtid.parse_position(Flavor.MYSQL, f"{u}:1-120"))


def test_server_id_clashes_ignore_our_own_stale_registration() -> None:
    rows = [(5, "replica-1"), (1_234, "tablemover:orders"), (1_234, "tablemover:other"), (7, "")]
    assert clashes(1_234, "tablemover:orders", rows) == ["tablemover:other"]
    assert clashes(5, "tablemover:orders", rows) == ["replica-1"]
    assert clashes(7, "tablemover:orders", rows) == ["(no host reported)"]
    assert clashes(99, "tablemover:orders", rows) == []


def test_lock_name_is_per_target_schema_and_move_and_fits() -> None:
    a = lock_name("app", "orders")
    assert a == lock_name("app", "orders")
    assert a != lock_name("app2", "orders") != lock_name("app", "orders2")
    assert len(lock_name("x" * 64, "y" * 32)) <= 64


def test_closed_connection_errors_are_transient() -> None:
    assert is_transient(InterfaceError(0, "Cancelled during execution"))
    assert is_transient(InterfaceError(0, "Not connected"))
    # The binlog stream's driver (PyMySQL) reports the same conditions with its own classes.
    assert is_transient(pymysql.err.OperationalError(2013, "Lost connection"))
    assert not is_transient(pymysql.err.OperationalError(1236, "binlog purged"))
    assert not is_transient(pymysql.err.ProgrammingError(1146, "no such table"))


def test_primary_error_prefers_a_final_decision_and_skips_consequences() -> None:
    lost = LockLost("lock connection lost")
    refusal = UnreproducibleEvent("statement write")
    assert primary_error(ExceptionGroup("g", [lost, refusal])) is refusal
    assert primary_error(ExceptionGroup("g", [lost, ValueError("x")])) is lost
    # A connection a cancelled sibling left unusable is a symptom; the reset socket is the cause.
    symptom = InterfaceError(0, "Cancelled during execution")
    reset = ConnectionResetError("reset by peer")
    assert primary_error(ExceptionGroup("g", [symptom, reset])) is reset
    assert primary_error(ExceptionGroup("g", [symptom])) is symptom


def test_a_stuck_attempt_does_not_refill_the_budget() -> None:
    # Attempts that each wait 50 s for a row lock and fail without committing are one outage.
    clock = Clock()
    budget = RetryBudget(300, first_s=1, max_s=15, clock=clock)
    attempts = 0
    while (delay := budget.next_delay()) is not None:
        attempts += 1
        clock.now += delay + 50
        budget.attempt_failed(committed=False, lasted_s=50)
    assert 4 <= attempts <= 6
    assert budget.elapsed_s >= 300


def test_an_attempt_that_committed_or_outlived_the_budget_ends_the_outage() -> None:
    clock = Clock()
    budget = RetryBudget(300, first_s=1, max_s=15, clock=clock)
    budget.next_delay()
    clock.now += 3600  # an idle move: nothing to commit for an hour, then the next fault
    budget.attempt_failed(committed=False, lasted_s=3600)
    assert budget.next_delay() == 1, "a fault an hour later is a new outage"
    clock.now += 5
    budget.attempt_failed(committed=True, lasted_s=5)
    assert budget.next_delay() == 1 and budget.attempts == 1
    clock.now += 5
    budget.attempt_failed(committed=False, lasted_s=5)
    assert budget.next_delay() == 2, "a short attempt that committed nothing continues the outage"
