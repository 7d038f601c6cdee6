"""The pure parts of the replica throttle (tablemover.replicas): the reason, the lag, the threads."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from tablemover.cli import status_text
from tablemover.config import ServerSection, ThrottleSection
from tablemover.flavor import Flavor
from tablemover.http import MetricsSnapshot, build_registry
from tablemover.replicas import (
    ReplicaLag,
    fallback_lag,
    lag_seconds,
    replica_reason,
    replica_server,
    replicas_behind,
    source_problem,
    status_columns,
    thread_problem,
    upstream,
    watched,
)
from tablemover.throttle import Readings, reason_kind, throttle_reason


def test_no_replica_over_the_limit_gives_no_reason() -> None:
    assert replica_reason(1.5, {"r1:3306": ReplicaLag(0.2), "r2:3306": ReplicaLag(1.5)}) == ""
    assert replica_reason(1.5, {}) == ""


def test_the_most_behind_replica_is_named_with_its_lag() -> None:
    reason = replica_reason(
        1.5, {"r1:3306": ReplicaLag(2.0), "r2:3306": ReplicaLag(7.25), "r3:1": ReplicaLag(0.1)}
    )
    assert reason == "target replica r2:3306 lag 7.25 s > max_replica_lag_s 1.5"
    assert reason_kind(reason) == "replica_lag"


def test_an_unreadable_replica_holds_the_copy_and_says_why() -> None:
    lags = {"r1:3306": ReplicaLag(9.0), "r2:3306": ReplicaLag(None, "cannot be read: refused")}
    assert replica_reason(1.5, lags) == "target replica r2:3306: cannot be read: refused"


def test_a_stopped_thread_holds_the_copy_even_with_a_fresh_heartbeat() -> None:
    assert ReplicaLag(0.0, "SQL thread No").over(1.5)
    assert (
        replica_reason(1.5, {"r:1": ReplicaLag(0.0, "SQL thread No")}) == "target replica r:1: SQL thread No"
    )


def test_lag_is_the_writer_clock_minus_the_beat_and_never_negative() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 1, 500000)
    assert lag_seconds(now, dt.datetime(2026, 1, 1, 12, 0, 0)) == 1.5
    assert lag_seconds(now, now + dt.timedelta(seconds=1)) == 0.0


def test_thread_problem_reads_show_slave_status() -> None:
    ok = {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes"}
    assert thread_problem(ok) == ""
    assert thread_problem(None).startswith("not a replica")
    assert thread_problem({**ok, "Slave_SQL_Running": "No"}) == "SQL thread No"
    io = thread_problem({**ok, "Slave_IO_Running": "Connecting", "Last_IO_Error": "error connecting"})
    assert io == "IO thread Connecting (error connecting)"


def test_the_replica_reason_comes_after_the_operator_and_own_lag_reasons() -> None:
    limits = ThrottleSection()
    held = Readings(0.0, 0, 0, False, False, "target replica r:1 lag 3.00 s > max_replica_lag_s 1.5")
    assert throttle_reason(limits, held) == held.replica_reason
    assert throttle_reason(limits, Readings(0.0, 0, 0, False, True, held.replica_reason)).startswith("paused")


def test_replica_server_takes_the_target_credentials() -> None:
    target = ServerSection(host="t", port=3307, user="u", password="p", socket="/s", tls_mode="required")
    replica = replica_server(target, "10.0.0.9:3310")
    assert (replica.host, replica.port, replica.socket) == ("10.0.0.9", 3310, "")
    assert (replica.user, replica.password.get_secret_value(), replica.tls_mode) == ("u", "p", "required")


def test_throttle_config_defaults_and_validation() -> None:
    section = ThrottleSection()
    assert (section.max_replica_lag_s, section.heartbeat_interval_ms, section.target_replicas) == (
        1.5,
        100,
        [],
    )
    assert ThrottleSection(target_replicas=["db2:3306"]).target_replicas == ["db2:3306"]
    with pytest.raises(ValidationError):
        ThrottleSection(target_replicas=["db2"])


def test_replicas_behind_compares_gtid_positions_per_domain() -> None:
    positions: dict[str, str | None] = {
        "ahead:1": "0-2-120,1-5-9",
        "equal:1": "0-2-100",
        "behind:1": "0-2-99",
        "other_domain:1": "1-2-500",
        "unreadable:1": None,
        "garbage:1": "not a gtid",
    }
    behind = replicas_behind(Flavor.MARIADB, "0-2-100", positions)
    assert behind == ["behind:1", "other_domain:1", "unreadable:1", "garbage:1"]


def test_replicas_behind_on_mysql_needs_the_whole_set() -> None:
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    positions: dict[str, str | None] = {"r1:1": f"{uuid}:1-10", "r2:1": f"{uuid}:1-4:6-10"}
    assert replicas_behind(Flavor.MYSQL, f"{uuid}:1-10", positions) == ["r2:1"]


def test_the_cutover_replica_wait_has_its_own_kind() -> None:
    assert reason_kind("cutover waits for target replicas to hold 0-2-5: r:1") == "replica_wait"
    assert reason_kind("cutover waits for blockers") == "cutover_blocked"


def test_replica_wait_config_defaults_and_values() -> None:
    section = ThrottleSection()
    assert (section.cutover_replica_wait_s, section.replica_wait_timeout_action) == (60.0, "stop")
    assert ThrottleSection(replica_wait_timeout_action="proceed").replica_wait_timeout_action == "proceed"
    with pytest.raises(ValidationError):
        ThrottleSection(replica_wait_timeout_action="ignore")


def test_source_problem_accepts_only_a_direct_replica_of_the_target() -> None:
    row = {"Master_Host": "db1", "Master_Port": 3306, "Master_Server_Id": 2}
    assert source_problem(2, row) == ""
    assert source_problem(2, None).startswith("is not a replica")
    assert "not from the target (server_id 2)" in source_problem(2, {**row, "Master_Server_Id": 7})
    assert "has not learned yet" in source_problem(2, {**row, "Master_Server_Id": 0})


def test_status_text_shows_each_watched_replica() -> None:
    status = {
        "state": "COPYING",
        "rows_copied": 10,
        "waiting_for": "target replica db3:3306: SQL thread No",
        "target_replicas": {
            "db2:3306": {"lag_s": 0.12, "problem": "", "holds_copy": False},
            "db3:3306": {"lag_s": None, "problem": "SQL thread No", "holds_copy": True},
        },
        "tables": {},
        "applied_gtid": "0-1-5",
    }
    lines = status_text(status, "orders")
    assert "  target replica db2:3306: lag 0.12 s" in lines
    assert "  target replica db3:3306: lag unknown (SQL thread No), holds the copy" in lines
    assert "  waiting: target replica db3:3306: SQL thread No" in lines


def test_metrics_expose_replica_lag_and_hold() -> None:
    snap = MetricsSnapshot(
        move="orders",
        state="COPYING",
        rows_copied={},
        rows_total={},
        events_applied=0,
        lag_seconds=0.0,
        throttled=True,
        throttle_reason="replica_lag",
        chunk_size=1000,
        cutover_outage_ms=None,
        hook_runs={},
        applied_gtid="",
        replica_lag_seconds={"db2:3306": 2.5, "db3:3306": None},
        replica_holds_copy={"db2:3306": True, "db3:3306": True},
    )
    text = generate_latest(build_registry(lambda: snap)).decode()
    assert 'tablemover_replica_lag_seconds{move="orders",replica="db2:3306"} 2.5' in text
    # Unreadable: no lag sample (absent, not 0, which would read as caught up), but it holds.
    assert 'tablemover_replica_lag_seconds{move="orders",replica="db3:3306"}' not in text
    assert 'tablemover_replica_holds_copy{move="orders",replica="db3:3306"} 1.0' in text


def test_source_replicas_are_watched_and_named_as_the_source_side() -> None:
    limits = ThrottleSection(target_replicas=["t1:3306"], source_replicas=["s1:3306", "s2:3307"])
    assert watched(limits, "target") == ["t1:3306"]
    assert watched(limits, "source") == ["s1:3306", "s2:3307"]
    reason = replica_reason(1.5, {"s1:3306": ReplicaLag(2.0)}, "source")
    assert reason == "source replica s1:3306 lag 2.00 s > max_replica_lag_s 1.5"
    # The same kind as the target's: status and /metrics label a replica's hold alike.
    assert reason_kind(reason) == "replica_lag"
    assert replica_reason(1.5, {"s1:3306": ReplicaLag(None, "SQL thread No")}, "source") == (
        "source replica s1:3306: SQL thread No"
    )
    with pytest.raises(ValidationError):
        ThrottleSection(source_replicas=["no-port"])


def test_source_problem_names_the_side() -> None:
    row = {"Master_Server_Id": 7, "Master_Host": "h", "Master_Port": 3306}
    assert source_problem(1, row, "source").endswith("not from the source (server_id 1)")
    assert source_problem(7, row, "source") == ""


def test_mysql_84_replica_status_columns_map_to_the_mariadb_names() -> None:
    row = {
        "Source_Host": "db1",
        "Source_Port": 3306,
        "Source_Server_Id": 2,
        "Replica_IO_Running": "Yes",
        "Replica_SQL_Running": "No",
        "Seconds_Behind_Source": None,
        "Last_SQL_Error": "boom",
    }
    mapped = status_columns(row)
    assert mapped == {
        "Master_Host": "db1",
        "Master_Port": 3306,
        "Master_Server_Id": 2,
        "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "No",
        "Seconds_Behind_Master": None,
        "Last_SQL_Error": "boom",
    }
    assert status_columns(None) is None
    # Everything that reads the row understands either naming.
    assert thread_problem(row) == "SQL thread No (boom)"
    assert source_problem(2, row) == ""
    assert "not from the target (server_id 5)" in source_problem(5, row)
    assert fallback_lag({**row, "Seconds_Behind_Source": 4}) == 4.0


def test_seconds_behind_master_is_a_labelled_fallback() -> None:
    assert fallback_lag({"Seconds_Behind_Master": 3}) == 3.0
    assert fallback_lag({"Seconds_Behind_Master": None}) is None
    assert fallback_lag(None) is None
    # A delayed replica's own figure is no measure of what it holds back.
    assert fallback_lag({"Seconds_Behind_Master": 0, "SQL_Delay": 3}) is None
    lag = ReplicaLag(3.0, "", "Seconds_Behind_Master")
    assert replica_reason(1.5, {"r:1": lag}) == (
        "target replica r:1 lag 3.00 s (Seconds_Behind_Master, fallback: no heartbeat yet) "
        "> max_replica_lag_s 1.5"
    )
    assert replica_reason(1.5, {"r:1": ReplicaLag(0.0, "", "Seconds_Behind_Master")}) == ""


def test_upstream_names_the_next_hop_of_a_chain_only() -> None:
    row = {"Master_Host": "mid", "Master_Port": 3307, "Master_Server_Id": 9}
    assert upstream(2, row) == "mid:3307"
    assert upstream(9, row) == ""  # direct: nothing to follow
    assert upstream(2, {**row, "Master_Server_Id": 0}) == ""  # never connected: refused, not followed
    assert upstream(2, None) == ""
    assert upstream(2, {"Source_Host": "mid", "Source_Port": 1, "Source_Server_Id": 9}) == "mid:1"


def test_status_text_shows_source_replicas_and_the_fallback_label() -> None:
    status = {
        "state": "WINDOW_OPEN",
        "source_replicas": {"s1:3306": {"lag_s": 2.0, "problem": "", "holds_copy": True}},
        "target_replicas": {
            "t1:3306": {
                "lag_s": 1.0,
                "problem": "",
                "holds_copy": False,
                "measured_by": "Seconds_Behind_Master",
            }
        },
    }
    lines = status_text(status, "orders")
    assert "  source replica s1:3306: lag 2.00 s, holds the reverse writes" in lines
    assert "  target replica t1:3306: lag 1.00 s by Seconds_Behind_Master (fallback)" in lines


def test_metrics_expose_source_replicas_apart_from_the_target_ones() -> None:
    snap = MetricsSnapshot(
        move="orders",
        state="WINDOW_OPEN",
        rows_copied={},
        rows_total={},
        events_applied=0,
        lag_seconds=0.0,
        throttled=True,
        throttle_reason="replica_lag",
        chunk_size=1000,
        cutover_outage_ms=None,
        hook_runs={},
        applied_gtid="",
        source_replica_lag_seconds={"s1:3306": 2.0, "s2:3306": None},
        source_replica_holds_writes={"s1:3306": True, "s2:3306": True},
    )
    text = generate_latest(build_registry(lambda: snap)).decode()
    assert 'tablemover_source_replica_lag_seconds{move="orders",replica="s1:3306"} 2.0' in text
    assert 'tablemover_source_replica_lag_seconds{move="orders",replica="s2:3306"}' not in text
    assert 'tablemover_source_replica_holds_writes{move="orders",replica="s2:3306"} 1.0' in text
    assert "tablemover_replica_holds_copy{" not in text
