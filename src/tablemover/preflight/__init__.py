"""Preflight: every check that must pass before a move changes anything, and the runner.

Each check lives in its own module of this package and registers itself with :func:`check`, naming
the :class:`Phase` it belongs to. :func:`run_checks` runs the phases in order; inside a phase every
check runs and all their problems are reported together (an operator fixes five things in one go,
not one per restart), and a failed phase stops the later ones, whose checks would only repeat the
failure in other words (no table check makes sense with a missing privilege).

Checks only read. :func:`preflight` is the entry point the CLI and the move runner call.
"""

from __future__ import annotations

import enum
import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncmy.errors import MySQLError

from tablemover import checkpoint as checkpoints
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.db import ConnectError, ServerInfo, close, connect, server_info
from tablemover.errors import PreflightError, SafetyRefusal
from tablemover.log import event
from tablemover.machine import PAST_POINT_OF_NO_RETURN, State
from tablemover.schema import TableSchema
from tablemover.tls import TlsSetupError

__all__ = [
    "CHECK_MODULES",
    "REGISTRY",
    "Check",
    "CheckFn",
    "Phase",
    "PreflightContext",
    "PreflightReport",
    "check",
    "format_problems",
    "preflight",
    "run_checks",
]


class Phase(enum.IntEnum):
    """When a check runs; phases run in this order."""

    SERVERS = 1  # versions, settings, privileges: facts about the two servers
    TABLES = 2  # the moved tables on the source and their counterparts on the target


# States in which the cutover's RENAME may already have happened, so a moved source table may exist
# under its renamed name instead. FAILED is included because a move can fail from CUTOVER_STARTED:
# accepting the renamed name there costs nothing (it only exists if we renamed it).
RENAME_MAY_HAVE_HAPPENED = PAST_POINT_OF_NO_RETURN | {State.CUTOVER_STARTED, State.FAILED}


@dataclass
class PreflightContext:
    """What every check may look at; the table checks also fill :attr:`schemas`."""

    config: Config
    source: Any  # open asyncmy connection to the source
    target: Any  # open asyncmy connection to the target
    source_info: ServerInfo
    target_info: ServerInfo
    checkpoint: Checkpoint | None  # newest checkpoint row of this move on the target
    schemas: dict[str, TableSchema] = field(default_factory=dict)  # keyed by the configured table name
    # The schema of the move's checkpoint on the target (checkpoint.locate_move); the state schema
    # unless a move an earlier version started keeps its rows in the target schema.
    state_database: str = ""

    @property
    def checkpoint_database(self) -> str:
        """Where this move's checkpoint rows are (the configured state schema when unknown)."""
        return self.state_database or self.config.move.state_database

    @property
    def source_address(self) -> str:
        """``source HOST:PORT`` for messages."""
        return f"source {self.config.source.address}"

    @property
    def target_address(self) -> str:
        """``target HOST:PORT`` for messages."""
        return f"target {self.config.target.address}"

    @property
    def resuming_past_cutover(self) -> bool:
        """True when the checkpoint says the source tables may already be renamed.

        The copy is over by then, so checks that protect the copy (foreign keys, triggers, engine)
        stand down: refusing to resume would leave the source tables renamed and the move stuck.
        """
        return self.checkpoint is not None and self.checkpoint.state in RENAME_MAY_HAVE_HAPPENED


CheckFn = Callable[[PreflightContext], Awaitable[list[str]]]


@dataclass(frozen=True)
class Check:
    """A registered check: an async function returning the problems it found (empty = pass)."""

    phase: Phase
    name: str
    run: CheckFn


REGISTRY: list[Check] = []
"""Every check, ordered by phase and, within a phase, by registration (import) order."""


def check(phase: Phase, name: str) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated ``async def fn(ctx) -> list[str]`` as the check ``name`` of ``phase``."""

    def register(fn: CheckFn) -> CheckFn:
        if any(c.name == name for c in REGISTRY):
            raise ValueError(f"preflight check {name!r} is registered twice")
        REGISTRY.append(Check(phase, name, fn))
        REGISTRY.sort(key=lambda c: c.phase)  # stable: keeps registration order within a phase
        return fn

    return register


async def run_checks(ctx: PreflightContext, registry: Sequence[Check] | None = None) -> None:
    """Run the checks phase by phase; raise :class:`PreflightError` at the first phase with problems.

    Every check of that phase has run, and the error lists all their problems; later phases do not
    run. ``registry`` defaults to :data:`REGISTRY` (tests pass their own).
    """
    checks = REGISTRY if registry is None else registry
    for phase in Phase:
        problems: list[str] = []
        for c in (c for c in checks if c.phase is phase):
            try:
                found = await c.run(ctx)
            except MySQLError as exc:
                # A query a check needs failed (a privilege we do not test for, a server quirk): that
                # is a failed check, not a crash, and the other checks still get to report.
                found = [
                    f"preflight check {c.name!r} could not run: {_mysql_error_text(exc)}. "
                    "Fix the cause (usually a missing privilege of the configured user) and run again."
                ]
            event(f"preflight check {c.name}", logging.DEBUG, check=c.name, problems=len(found))
            problems.extend(found)
        if problems:
            raise PreflightError(format_problems(problems))


def format_problems(problems: Sequence[str]) -> str:
    """The text of the :class:`PreflightError`: every problem as its own paragraph."""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    body = "\n".join(f"  - {p}" for p in problems)
    return f"preflight failed ({count}); nothing was changed on either server:\n{body}"


def _mysql_error_text(exc: MySQLError) -> str:
    if len(exc.args) >= 2:
        return f"error {exc.args[0]}: {exc.args[1]}"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class PreflightReport:
    """What preflight learned, handed to the caller so it does not have to read it again."""

    source_info: ServerInfo
    target_info: ServerInfo
    checkpoint: Checkpoint | None
    schemas: dict[str, TableSchema]
    state_database: str  # where the move's checkpoint rows are (see PreflightContext)


async def preflight(config: Config) -> PreflightReport:
    """Connect to both servers, run every check, close the connections; change nothing.

    Raises :class:`PreflightError` (exit code 2) when a server is unreachable, refuses the
    credentials, or any check fails.
    """
    source: Any = None
    target: Any = None
    try:
        failures: list[str] = []
        try:
            source = await connect(config.source, "source", connection="preflight")
        except (ConnectError, TlsSetupError) as exc:
            failures.append(str(exc))
        try:
            target = await connect(config.target, "target", connection="preflight")
        except (ConnectError, TlsSetupError) as exc:
            failures.append(str(exc))
        if failures:
            # Both servers are tried first, so one run tells the operator about both.
            raise PreflightError(failures[0] if len(failures) == 1 else format_problems(failures))
        source_info = await _read_info(source, config, "source")
        target_info = await _read_info(target, config, "target")
        state_db = config.move.state_database
        try:
            state_db = await checkpoints.locate_move(target, config.move)
            cp = await checkpoints.latest(target, state_db, config.move.name)
        except MySQLError as exc:
            raise PreflightError(
                f"target {config.target.address}: cannot read the checkpoint table "
                f"{state_db}.{checkpoints.TABLE} ({_mysql_error_text(exc)}). The user "
                f"{config.target.user!r} needs {checkpoints.grant_hint(state_db)}."
            ) from exc
        if cp is not None and cp.state is State.FAILED:
            # Persisted by the daemon that stopped on it; every later command repeats the reason.
            raise SafetyRefusal(checkpoints.failed_message(cp))
        ctx = PreflightContext(config, source, target, source_info, target_info, cp, state_database=state_db)
        await run_checks(ctx)
        event("preflight passed", checks=len(REGISTRY), resuming=cp.state.value if cp else None)
        return PreflightReport(source_info, target_info, cp, dict(ctx.schemas), state_db)
    finally:
        for conn in (source, target):
            if conn is not None:
                await close(conn)


async def _read_info(conn: Any, config: Config, role: str) -> ServerInfo:
    try:
        return await server_info(conn)
    except (MySQLError, ValueError) as exc:
        address = config.source.address if role == "source" else config.target.address
        raise PreflightError(
            f"{role} {address}: cannot read the server's version and binlog settings ({exc}). "
            "tablemover supports MariaDB 10.6+ and MySQL 8.0+; check that [" + role + "] points at one."
        ) from exc


# The checks register themselves when imported. This tuple is the order they run in within a phase:
# the later table checks read the schemas that `source_tables` inspected.
CHECK_MODULES = (
    "versions",
    "tls_state",
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
    "replica_definition",
    "long_transactions",
)
for _module in CHECK_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
