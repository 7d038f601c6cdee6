"""The preflight registry and runner: order, problem collection, phase gating."""

from __future__ import annotations

import pytest
from asyncmy.errors import OperationalError

from tablemover.checkpoint import Checkpoint
from tablemover.config import parse_config
from tablemover.db import ServerInfo
from tablemover.errors import PreflightError
from tablemover.flavor import parse_version
from tablemover.machine import State
from tablemover.preflight import (
    CHECK_MODULES,
    REGISTRY,
    Check,
    Phase,
    PreflightContext,
    check,
    format_problems,
    run_checks,
)

CONFIG = parse_config('[move]\nname = "m"\ndatabase = "app"\ntables = ["orders"]\n', env={})


def _info(server_id: int) -> ServerInfo:
    return ServerInfo(
        version=parse_version("10.11.6-MariaDB"),
        server_id=server_id,
        server_uuid=None,
        hostname=f"db{server_id}",
        port=3306,
        datadir="/var/lib/mysql",
        log_bin=True,
        binlog_format="ROW",
        binlog_row_image="FULL",
        binlog_row_metadata="FULL",
        gtid_mode=None,
    )


def _ctx(checkpoint: Checkpoint | None = None) -> PreflightContext:
    return PreflightContext(CONFIG, None, None, _info(1), _info(2), checkpoint)


class Recorder:
    """Builds fake checks that record that they ran and return canned problems."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def make(self, phase: Phase, name: str, problems: list[str] | None = None) -> Check:
        async def run(ctx: PreflightContext) -> list[str]:
            self.ran.append(name)
            return list(problems or [])

        return Check(phase, name, run)


def test_registry_holds_every_check_in_phase_order() -> None:
    names = [c.name for c in REGISTRY]
    assert names == [
        "versions",
        "tls",
        "same_server",
        "names",
        "binlog",
        "binlog_events",
        "gtid_tags",
        "target_binlog",
        "privileges",
        "read_replica",
        "binlog_retained",
        "server_id",
        "hook_files",
        "checkpoint_claims",
        "http_exposure",
        "secret_files",
        "source_tables",
        "renamed_free",
        "chunk_key",
        "engine",
        "foreign_keys",
        "triggers",
        "target_empty",
        "target_definition",
        "read_replica_definition",
        "long_transactions",
    ]
    phases = [c.phase for c in REGISTRY]
    assert phases == sorted(phases)
    assert len(CHECK_MODULES) == len(REGISTRY)
    # the table checks read what source_tables inspected, so it must come first in its phase
    table_checks = [c.name for c in REGISTRY if c.phase is Phase.TABLES]
    assert table_checks[0] == "source_tables"


def test_phases_run_in_order() -> None:
    assert list(Phase) == [Phase.SERVERS, Phase.TABLES]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        check(Phase.SERVERS, "versions")(REGISTRY[0].run)


async def test_all_pass() -> None:
    rec = Recorder()
    registry = [rec.make(Phase.SERVERS, "a"), rec.make(Phase.TABLES, "b"), rec.make(Phase.TABLES, "c")]
    await run_checks(_ctx(), registry)
    assert rec.ran == ["a", "b", "c"]


async def test_problems_of_one_phase_are_collected_and_later_phases_skipped() -> None:
    rec = Recorder()
    registry = [
        rec.make(Phase.SERVERS, "a", ["problem one"]),
        rec.make(Phase.SERVERS, "b"),
        rec.make(Phase.SERVERS, "c", ["problem two", "problem three"]),
        rec.make(Phase.TABLES, "d", ["never reported"]),
    ]
    with pytest.raises(PreflightError) as err:
        await run_checks(_ctx(), registry)
    assert rec.ran == ["a", "b", "c"]
    text = str(err.value)
    assert "3 problems" in text
    assert "nothing was changed" in text
    for p in ("problem one", "problem two", "problem three"):
        assert f"  - {p}" in text
    assert "never reported" not in text
    assert err.value.exit_code == 2


async def test_registry_order_wins_over_list_order_for_phases() -> None:
    rec = Recorder()
    registry = [rec.make(Phase.TABLES, "t", ["table problem"]), rec.make(Phase.SERVERS, "s")]
    with pytest.raises(PreflightError, match="table problem"):
        await run_checks(_ctx(), registry)
    assert rec.ran == ["s", "t"]


async def test_a_failing_query_is_a_problem_not_a_crash() -> None:
    rec = Recorder()

    async def broken(ctx: PreflightContext) -> list[str]:
        raise OperationalError(1142, "SELECT command denied to user 'm'@'%' for table 'x'")

    registry = [Check(Phase.SERVERS, "broken", broken), rec.make(Phase.SERVERS, "after", ["other"])]
    with pytest.raises(PreflightError) as err:
        await run_checks(_ctx(), registry)
    assert rec.ran == ["after"]
    assert "preflight check 'broken' could not run: error 1142: SELECT command denied" in str(err.value)
    assert "other" in str(err.value)


def test_format_problems_singular() -> None:
    assert format_problems(["x"]).startswith("preflight failed (1 problem); ")


@pytest.mark.parametrize(
    ("state", "past"),
    [
        (None, False),
        (State.PREPARED, False),
        (State.COPYING, False),
        (State.ABORTED, False),
        (State.CUTOVER_STARTED, True),
        (State.RENAMED, True),
        (State.DRAINED, True),
        (State.HOOK_FIRED, True),
        (State.DONE, True),
        (State.FAILED, True),
    ],
)
def test_resuming_past_cutover(state: State | None, past: bool) -> None:
    cp = Checkpoint(move_name="m", state=state, applied_gtid="") if state else None
    assert _ctx(cp).resuming_past_cutover is past


async def test_target_binlog_is_checked_only_with_a_rollback_window() -> None:
    from dataclasses import replace

    from tablemover.preflight.target_binlog import target_binlog

    statement_target = replace(_info(2), binlog_format="STATEMENT")
    without = PreflightContext(CONFIG, None, None, _info(1), statement_target, None)
    assert await target_binlog(without) == []
    windowed = parse_config(
        '[move]\nname = "m"\ndatabase = "app"\ntables = ["orders"]\nrollback_window_s = 60\n', env={}
    )
    problems = await target_binlog(PreflightContext(windowed, None, None, _info(1), statement_target, None))
    assert len(problems) == 1 and "binlog_format is STATEMENT" in problems[0]
    assert "rollback_window_s" in problems[0]
