"""The cutover, T0..T2 of the spec: wait until it may go (caught up, not postponed, no blocker),
write the intent, run on-before-cutover, RENAME every table in one statement and read the drain
position on the same connection, record RENAMED.

Also the inspection that tells, after a crash or an unanswered RENAME, whether the rename happened,
and what a resume in CUTOVER_STARTED does with that.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import asyncmy.constants.CLIENT as CLIENT

from tablemover import faults, sql
from tablemover.blockers import BlockerWatch
from tablemover.config import Config, MoveSection, ServerSection
from tablemover.controls import Controls
from tablemover.db import ER_LOCK_WAIT_TIMEOUT, close, connect, current_position, error_code, position_sql
from tablemover.errors import MoveFailed, SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.hooks import run_hooks
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.schema import table_exists

if TYPE_CHECKING:
    from tablemover.apply import TargetWriter
    from tablemover.lag import LagMonitor
    from tablemover.status import Board


def renames_record(move: MoveSection) -> dict[str, Any]:
    """What the RENAME does, as recorded in the intent and RENAMED rows (before and after it).

    ``cleanup --drop-source`` drops exactly these names, never what today's config would name:
    the format or the table list may have changed since (``maintenance.recorded_renames``).
    """
    return {"source_database": move.database, "renames": {t: move.renamed(t) for t in move.tables}}


class RenameOutcome(enum.Enum):
    """What a RENAME attempt did."""

    RENAMED = "renamed"
    LOCK_TIMEOUT = "lock_timeout"  # nothing renamed; try again later
    UNKNOWN = "unknown"  # the round trip failed: inspect the source


@dataclass(frozen=True)
class RenameResult:
    """Outcome plus, when renamed, the source position read right after it."""

    outcome: RenameOutcome
    drain_gtid: str = ""
    error: str = ""


def rename_comment(move_name: str, nonce: str) -> str:
    """The comment tagging our RENAME in the binlog (the stream skips it as foreign DDL by this)."""
    return f"tablemover move={move_name} nonce={nonce}"


def new_nonce() -> str:
    """A random tag for one cutover attempt."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Renaming:
    """One all-or-nothing RENAME of every moved table on one server: the cutover's on the source,
    and the rollback's two (the target's tables away, the source's back)."""

    server: ServerSection
    role: str  # "source" or "target", for messages
    database: str
    pairs: tuple[tuple[str, str], ...]  # (name before, name after), one per moved table
    comment: str
    lock_timeout_s: int
    faults: str = "cutover"  # the fault-injection points' prefix (tests)

    def statement(self) -> str:
        """The RENAME TABLE statement."""
        return sql.rename_tables(self.database, list(self.pairs), self.comment)


def forward_renaming(config: Config, nonce: str) -> Renaming:
    """The cutover's RENAME: every source table to its renamed_table_format name."""
    move = config.move
    return Renaming(
        config.source,
        "source",
        move.database,
        tuple((t, move.renamed(t)) for t in move.tables),
        rename_comment(move.name, nonce),
        move.cutover_lock_timeout_s,
    )


async def rename_and_capture(renaming: Renaming, flavor: Flavor) -> RenameResult:
    """One round trip on one connection: the multi-table RENAME, then the GTID position.

    The RENAME runs with a bounded lock_wait_timeout so a long transaction on a moved table cannot
    stall it, and every query queued behind its metadata lock, for longer than that.
    """
    conn = await connect(
        renaming.server, renaming.role, client_flag=CLIENT.MULTI_STATEMENTS, connection="rename"
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SET SESSION lock_wait_timeout = {int(renaming.lock_timeout_s)}")
            try:
                faults.fail(f"{renaming.faults}.before_rename")
                await cur.execute(f"{renaming.statement()}; {position_sql(flavor)}")
                faults.hit(f"{renaming.faults}.after_rename")
                faults.fail(f"{renaming.faults}.after_rename")
                await cur.nextset()
                row = await cur.fetchone()
            except Exception as exc:
                if error_code(exc) == ER_LOCK_WAIT_TIMEOUT:
                    return RenameResult(RenameOutcome.LOCK_TIMEOUT, error=str(exc))
                return RenameResult(RenameOutcome.UNKNOWN, error=f"{type(exc).__name__}: {exc}")
        return RenameResult(RenameOutcome.RENAMED, str(row[0] if row else "").replace("\n", ""))
    finally:
        await close(conn)


class SourceTables(enum.Enum):
    """What an inspection of the source found."""

    ORIGINAL = "original"  # every original present, no renamed table: the rename did not happen
    RENAMED = "renamed"  # every renamed present, no original: the rename happened
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Inspection:
    """Per name before the renaming: (it exists, the name after exists), and the verdict."""

    found: dict[str, tuple[bool, bool]]
    verdict: SourceTables
    renaming: Renaming | None = None

    def describe(self) -> str:
        """For the operator: what exists under which name."""
        if self.renaming is None:
            return repr(self.found)
        db = self.renaming.database
        after = dict(self.renaming.pairs)
        parts = []
        for table, (original, renamed) in self.found.items():
            parts.append(
                f"{db}.{table} {'exists' if original else 'is absent'}, "
                f"{db}.{after[table]} {'exists' if renamed else 'is absent'}"
            )
        return "; ".join(parts)


def judge(found: dict[str, tuple[bool, bool]]) -> SourceTables:
    """Pure verdict over what exists: all-original, all-renamed, or anything else."""
    if all(o and not r for o, r in found.values()):
        return SourceTables.ORIGINAL
    if all(r and not o for o, r in found.values()):
        return SourceTables.RENAMED
    return SourceTables.AMBIGUOUS


async def inspect(renaming: Renaming) -> Inspection:
    """Which of the names before and after ``renaming`` exist: did it happen?"""
    conn = await connect(renaming.server, renaming.role)
    try:
        found = {}
        for before, after in renaming.pairs:
            found[before] = (
                await table_exists(conn, renaming.database, before),
                await table_exists(conn, renaming.database, after),
            )
        return Inspection(found, judge(found), renaming)
    finally:
        await close(conn)


async def inspect_source(config: Config) -> Inspection:
    """Which of the original and renamed tables exist on the source."""
    return await inspect(forward_renaming(config, ""))


@dataclass
class CutoverTimings:
    """The write outage's clock, kept by the runner across attempts of one process.

    The outage runs from the RENAME that stops the application's writes to the hook that points it
    at the other side: the cutover's (source RENAME -> on-success), or a rollback's (target RENAME
    -> on-rollback).
    """

    kind: str = "cutover"  # or "rollback"
    rename_started_at: float = 0.0  # when the successful RENAME was sent (0: not in this process)
    lock_wait_ms: int | None = None  # the successful round trip: lock wait plus the RENAME
    attempts: int = 0
    wait_ms: float = 0.0  # every RENAME round trip, failed ones (lock timeouts) included

    def report_outage(self, board: Board) -> None:
        """Log the outage so far (from the RENAME to now, the hook) and show it on the board."""
        if not self.rename_started_at:
            return
        outage_ms = round((time.monotonic() - self.rename_started_at) * 1000)
        if self.kind == "rollback":
            board.rollback_outage_ms = outage_ms
        else:
            board.outage_ms = outage_ms
            board.outage_lock_wait_ms = self.lock_wait_ms
        event(
            f"{self.kind} outage",
            outage_ms=outage_ms,
            lock_wait_ms=self.lock_wait_ms,
            rename_attempts=self.attempts,
            failed_attempts_wait_ms=round(self.wait_ms - (self.lock_wait_ms or 0)),
        )


class Cutover:
    """The cutover of one pipeline run: everything it reads is passed in."""

    def __init__(
        self,
        config: Config,
        machine: MoveMachine,
        writer: TargetWriter,
        source: Any,
        *,
        lag: LagMonitor,
        controls: Controls,
        board: Board,
        timings: CutoverTimings,
        hook_env: Callable[[], dict[str, str]],
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.gate = gate  # the checksum before the cutover (verify_before_cutover), or None
        self._gated = False  # the gate passed in this run, and nothing held the cutover since
        self.flavor = lag.flavor
        self.machine = machine
        self.writer = writer
        self.source = source
        self.lag = lag
        self.controls = controls
        self.board = board
        self.timings = timings
        self.hook_env = hook_env
        self.blockers = BlockerWatch(config.move, lag.flavor, board)

    async def run(self) -> None:
        """From COPYING (or an unrenamed CUTOVER_STARTED) to RENAMED.

        A failed hook or a lock timeout goes back to COPYING and tries again (bounded by
        cutover_max_attempts, then the move fails resumably).
        """
        move = self.config.move
        for attempt in range(1, move.cutover_max_attempts + 1):
            # Postponed, lagging or blocked waits (while still in COPYING: abortable, nothing
            # intended yet), then the checksum gate, last, right before the intent.
            await self._ready()
            if self.machine.current is State.COPYING:
                nonce = new_nonce()
                await self.machine.fire(
                    "begin_cutover", detail={"nonce": nonce, "attempt": attempt, **renames_record(move)}
                )
            else:
                nonce = str(self.writer.checkpoint.detail.get("nonce") or new_nonce())
            hook = await run_hooks(
                self.config, "before-cutover", State.CUTOVER_STARTED.value, self.hook_env()
            )
            if not hook.ok:
                event(
                    "on-before-cutover hook failed: nothing renamed, back to copying",
                    hook=hook.failed,
                    detail=hook.detail,
                    attempt=attempt,
                )
                await self.machine.fire(
                    "cancel_cutover", detail={"reason": f"hook {hook.failed}: {hook.detail}"}
                )
                await anyio.sleep(min(1.0 * attempt, 30.0))
                continue
            # ... and look again right before the RENAME: the hook may have taken a while.
            await self.blockers.wait(self.source)
            if await self._rename(nonce, attempt):
                return
        raise MoveFailed(
            f"the cutover did not succeed in {move.cutover_max_attempts} attempts (see the log for each "
            "reason); nothing is renamed and the move is resumable: fix the cause and run again."
        )

    async def _ready(self) -> None:
        """Wait until the cutover may go, then run the checksum gate as the last step before it.

        The gate's verdict is meant to cover the data as it is at the RENAME, so it runs after
        the waits that can last (a postponement held for days, blockers), never at the start of
        one. It runs once per cutover; a later attempt (after a failed hook or a lock timeout)
        runs it again only when that attempt was held by a postponement or a blocker. After the
        gate the waits are checked once more: the gate itself can take minutes, and a
        postponement set meanwhile must still hold the cutover (and the gate runs again after
        it). A blocker found again then does not re-run it: its wait is bounded
        (cutover_blocker_wait_s), and a blocker that stays would otherwise loop gate after gate.
        """
        gated_now = False
        while True:
            postponed = await self._may_go()
            blocked = await self.blockers.wait(self.source)
            held = postponed or (blocked and not gated_now)
            if self.gate is None or (self._gated and not held):
                return
            await self.gate()
            self._gated = gated_now = True

    async def _rename(self, nonce: str, attempt: int) -> bool:
        """T2: one RENAME round trip; True in RENAMED, False back in COPYING to try again."""
        move = self.config.move
        started = time.monotonic()
        result = await rename_and_capture(forward_renaming(self.config, nonce), self.flavor)
        self.timings.attempts += 1
        self.timings.wait_ms += (time.monotonic() - started) * 1000
        if result.outcome is RenameOutcome.LOCK_TIMEOUT:
            event(
                "RENAME timed out waiting for a lock: nothing renamed, trying again later",
                lock_wait_timeout_s=move.cutover_lock_timeout_s,
                attempt=attempt,
                error=result.error,
            )
            await self.machine.fire("cancel_cutover", detail={"reason": "lock wait timeout"})
            await anyio.sleep(min(1.0 * attempt, 10.0))
            return False
        drain = result.drain_gtid
        if result.outcome is RenameOutcome.UNKNOWN:
            event("RENAME outcome unknown; inspecting the source", error=result.error)
            if not await self._renamed_on_source():
                return False
            drain = await current_position(self.source, self.flavor)
        self.timings.rename_started_at = started
        # The successful round trip: the RENAME waiting for its metadata lock, then running.
        self.timings.lock_wait_ms = round((time.monotonic() - started) * 1000)
        await self.machine.fire(
            "mark_renamed", drain_gtid=drain, detail={"nonce": nonce, **renames_record(move)}
        )
        event("source tables renamed", drain_gtid=drain, renamed=",".join(map(move.renamed, move.tables)))
        return True

    async def _may_go(self) -> bool:
        """Wait while the cutover is postponed (by command or flag file) or the apply lags.

        True when a postponement held it (the checksum gate then runs again after it).
        """
        move = self.config.move
        flag = move.postpone_flag_file
        announced = False
        while True:
            await self.lag.wait_caught_up(self.writer, move.tables)
            held = move.postpone_cutover and not self.controls.cutover_released.is_set()
            if held or (flag and await anyio.Path(flag).exists()):
                self.board.cutover_wait = "cutover postponed: waiting for " + (
                    "`tablemover cutover`" if held else f"{flag} to be removed"
                )
                if not announced:
                    event(
                        "cutover postponed: release it with `tablemover cutover`"
                        + (f" and by removing {flag}" if flag else ""),
                        socket=self.config.socket_path,
                    )
                    await run_hooks(self.config, "begin-postponed", State.COPYING.value, self.hook_env())
                    announced = True
                await anyio.sleep(0.5)
                continue
            self.board.cutover_wait = ""
            if self.board.lag_s < move.drain_timeout_s:
                return announced

    async def _renamed_on_source(self) -> bool:
        """After an unanswered RENAME: True if it happened, False if not (back to COPYING)."""
        inspection = await inspect_source(self.config)
        if inspection.verdict is SourceTables.RENAMED:
            return True
        if inspection.verdict is SourceTables.ORIGINAL:
            await self.machine.fire("cancel_cutover", detail={"reason": "RENAME did not happen"})
            return False
        raise SafetyRefusal(ambiguous_message(self.config, inspection))


async def resolve_cutover_started(config: Config, machine: MoveMachine, source: Any, flavor: Flavor) -> None:
    """Resume in CUTOVER_STARTED: the intent was written; did the RENAME happen?

    Not renamed: the cutover is redone from the intent. Renamed: RENAMED is recorded with the
    current position, which is later than the one read after the RENAME and so covers it and
    everything before it: a safe over-estimate to drain to. Anything else: an operator decides.
    """
    inspection = await inspect_source(config)
    if inspection.verdict is SourceTables.ORIGINAL:
        event("resume in CUTOVER_STARTED: the source tables are not renamed; redoing the cutover")
        return
    if inspection.verdict is SourceTables.RENAMED:
        drain = await current_position(source, flavor)
        event("resume in CUTOVER_STARTED: the source tables are renamed; recording it", drain_gtid=drain)
        await machine.fire(
            "mark_renamed", drain_gtid=drain, detail={"recovered": True, **renames_record(config.move)}
        )
        return
    raise SafetyRefusal(ambiguous_message(config, inspection))


def ambiguous_message(config: Config, inspection: Inspection) -> str:
    """Why the cutover refuses to go on when the source is neither before nor after the RENAME."""
    return (
        f"refusing to continue the cutover of move {config.move.name!r}: the source is in neither "
        f"the before nor the after state ({inspection.describe()}). Someone may have "
        "recreated a table or renamed one by hand. Decide which tables hold the live data, make the "
        "source match either state (all originals, or all renamed), then run again. Nothing was changed."
    )
