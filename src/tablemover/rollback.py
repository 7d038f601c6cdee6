"""`tablemover rollback`: the forward cutover mirrored, during the rollback window.

1. ROLLBACK_STARTED, the intent, is written first; then ``on-before-rollback`` runs (non-zero: the
   rollback is declined, the window stays open, nothing renamed).
2. One round trip on the target: every moved table renamed away (``_t_rolledback``) in one RENAME,
   and the target's position read on the same connection: ROLLBACK_RENAMED with it. From here the
   application's writes to the target fail, as the source's did at the cutover.
3. The reverse feed drains to that position: ROLLBACK_DRAINED (``drain.py``, as forward).
4. On the source, the renamed tables get their names back in one RENAME (:func:`restore_source`),
   then ``on-rollback`` runs until it exits 0 (the application points back at the source):
   ROLLED_BACK.

The crash rules are the forward ones: an intent before each RENAME (ROLLBACK_STARTED before the
target's, ROLLBACK_DRAINED before the source's), the real tables inspected on resume, and exit 3
when they are in neither the before nor the after state.

:class:`WindowPhases` is how the runner walks the window and the rollback: it opens the window (or
finishes), runs the reverse feed (``window.py``) with its writer on the source, holds the window
open as the feed's driver until it elapses or a rollback (steps 1-3) drains, and runs step 4's hook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from tablemover import checkpoint as cpstore
from tablemover import gtid
from tablemover.apply import TargetWriter
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.controls import Controls
from tablemover.cutover import (
    CutoverTimings,
    Inspection,
    RenameOutcome,
    Renaming,
    SourceTables,
    inspect,
    new_nonce,
    rename_and_capture,
)
from tablemover.db import WRITER_SQL_MODE, close, connect, current_position
from tablemover.drain import drain
from tablemover.errors import SafetyRefusal, TablemoverError
from tablemover.flavor import Flavor
from tablemover.hooks import fire_until_ok, run_hooks
from tablemover.lag import LagMonitor
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.pipeline import Pipeline
from tablemover.record import Recorder
from tablemover.retry import primary_error
from tablemover.schema import TableSchema
from tablemover.status import Board, hook_env
from tablemover.window import (
    Window,
    feed_state_database,
    hold_open,
    reverse_checkpoint,
    reverse_feed,
    rollback_comment,
)

T = TypeVar("T")

RESTORE_RETRY_S = 1.0


def rollback_renaming(config: Config, nonce: str) -> Renaming:
    """The target's RENAME: every moved table to its rolledback_table_format name."""
    move = config.move
    return Renaming(
        config.target,
        "target",
        move.effective_target_database,
        tuple((t, move.rolledback(t)) for t in move.tables),
        rollback_comment(move.name, nonce),
        move.cutover_lock_timeout_s,
        faults="rollback",
    )


def restore_renaming(config: Config) -> Renaming:
    """The source's RENAME back: every renamed table to its original name."""
    move = config.move
    return Renaming(
        config.source,
        "source",
        move.database,
        tuple((move.renamed(t), t) for t in move.tables),
        f"tablemover restore move={move.name}",
        move.cutover_lock_timeout_s,
        faults="restore",
    )


class Rollback:
    """Steps 1 and 2: from WINDOW_OPEN (or an unrenamed ROLLBACK_STARTED) to ROLLBACK_RENAMED."""

    def __init__(
        self,
        config: Config,
        machine: MoveMachine,
        window: Window,
        target_flavor: Flavor,
        *,
        board: Board,
        timings: CutoverTimings,
        hook_env: Callable[[], dict[str, str]],
    ) -> None:
        self.config = config
        self.machine = machine
        self.window = window
        self.flavor = target_flavor
        self.board = board
        self.timings = timings
        self.hook_env = hook_env

    async def run(self) -> bool:
        """True in ROLLBACK_RENAMED; False when declined or given up (back in WINDOW_OPEN)."""
        attempts = self.config.move.cutover_max_attempts
        for attempt in range(1, attempts + 1):
            if self.machine.current is State.WINDOW_OPEN:
                nonce = new_nonce()
                await self.machine.fire(
                    "begin_rollback", detail=self.window.detail(nonce=nonce, attempt=attempt)
                )
            else:
                cp = self.board.committed.checkpoint
                nonce = str(cp.detail.get("nonce") if cp is not None else "") or new_nonce()
            hook = await run_hooks(
                self.config, "before-rollback", State.ROLLBACK_STARTED.value, self.hook_env()
            )
            if not hook.ok:
                event(
                    "on-before-rollback hook declined the rollback: nothing renamed, the window stays open",
                    hook=hook.failed,
                    detail=hook.detail,
                )
                await self._cancel(f"hook {hook.failed}: {hook.detail}")
                return False
            if await self._rename(nonce, attempt):
                return True
        event(
            f"the rollback's RENAME did not succeed in {attempts} attempts; nothing is renamed and the "
            "window stays open: fix the cause (see each attempt's reason) and ask again",
        )
        return False

    async def _rename(self, nonce: str, attempt: int) -> bool:
        renaming = rollback_renaming(self.config, nonce)
        started = time.monotonic()
        result = await rename_and_capture(renaming, self.flavor)
        self.timings.attempts += 1
        self.timings.wait_ms += (time.monotonic() - started) * 1000
        if result.outcome is RenameOutcome.LOCK_TIMEOUT:
            event(
                "rollback RENAME timed out waiting for a lock: nothing renamed, trying again", attempt=attempt
            )
            await self._cancel("lock wait timeout")
            await anyio.sleep(min(1.0 * attempt, 10.0))
            return False
        drain = result.drain_gtid
        if result.outcome is RenameOutcome.UNKNOWN:
            event("rollback RENAME outcome unknown; inspecting the target", error=result.error)
            inspection = await inspect(renaming)
            if inspection.verdict is SourceTables.ORIGINAL:
                await self._cancel("RENAME did not happen")
                return False
            if inspection.verdict is not SourceTables.RENAMED:
                raise SafetyRefusal(ambiguous_message(self.config, inspection))
            drain = await _position_now(self.config, self.flavor)
        self.timings.rename_started_at = started
        self.timings.lock_wait_ms = round((time.monotonic() - started) * 1000)
        await self.machine.fire(
            "mark_rollback_renamed", drain_gtid=drain, detail=self.window.detail(nonce=nonce)
        )
        event("target tables renamed away for the rollback", drain_gtid=drain)
        return True

    async def _cancel(self, reason: str) -> None:
        await self.machine.fire("cancel_rollback", detail=self.window.detail(reason=reason))


async def resolve_rollback_started(
    config: Config, machine: MoveMachine, window: Window, target_flavor: Flavor
) -> None:
    """Resume in ROLLBACK_STARTED: did the target's RENAME happen?

    Not renamed: the rollback is redone from its intent. Renamed: ROLLBACK_RENAMED is recorded with
    the target's position now, a safe over-estimate of the one read after the RENAME.
    """
    inspection = await inspect(rollback_renaming(config, ""))
    if inspection.verdict is SourceTables.ORIGINAL:
        event("resume in ROLLBACK_STARTED: the target tables are not renamed; redoing the rollback")
        return
    if inspection.verdict is SourceTables.RENAMED:
        drain = await _position_now(config, target_flavor)
        event("resume in ROLLBACK_STARTED: the target tables are renamed; recording it", drain_gtid=drain)
        await machine.fire("mark_rollback_renamed", drain_gtid=drain, detail=window.detail(recovered=True))
        return
    raise SafetyRefusal(ambiguous_message(config, inspection))


async def restore_source(config: Config, flavor: Flavor) -> None:
    """Step 4's RENAME: the source's renamed tables back under their names (idempotent on resume)."""
    renaming = restore_renaming(config)
    while True:
        inspection = await inspect(renaming)
        if inspection.verdict is SourceTables.RENAMED:
            event("source tables are back under their names", tables=",".join(config.move.tables))
            return
        if inspection.verdict is not SourceTables.ORIGINAL:
            raise SafetyRefusal(ambiguous_message(config, inspection))
        result = await rename_and_capture(renaming, flavor)
        if result.outcome is RenameOutcome.RENAMED:
            continue  # the inspection above confirms it and logs
        event("restoring the source tables' names failed; trying again", error=result.error)
        await anyio.sleep(RESTORE_RETRY_S)


def ambiguous_message(config: Config, inspection: Inspection) -> str:
    """Why the rollback refuses to go on when a server is neither before nor after its RENAME."""
    return (
        f"refusing to continue the rollback of move {config.move.name!r}: the tables are in neither the "
        f"before nor the after state ({inspection.describe()}). Someone may have created or renamed a "
        "table by hand. Decide which tables hold the live data, make them match either state, then run "
        "again. Nothing was changed."
    )


async def _position_now(config: Config, flavor: Flavor) -> str:
    conn: Any = await connect(config.target, "target")
    try:
        return await current_position(conn, flavor)
    finally:
        await close(conn)


class WindowPhases:
    """The rollback window's phases as the runner walks them: open it (or finish), run the reverse
    feed with the window held open, a rollback and its drain as its driver, then ``on-rollback``.

    ``record`` commits the move's checkpoint rows on the target and is told of the reverse feed's
    pipeline while it runs, so transitions and stops go through it as they do the forward one's.
    """

    def __init__(
        self,
        config: Config,
        schemas: dict[str, TableSchema],
        target_flavor: Flavor,
        *,
        controls: Controls,
        board: Board,
        timings: CutoverTimings,
        record: Recorder,
    ) -> None:
        self.config = config
        self.schemas = schemas
        self.target_flavor = target_flavor
        self.controls = controls
        self.board = board
        self.timings = timings
        self.record = record

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint of the move."""
        return self.board.committed.checkpoint

    async def finish_or_open(self, machine: MoveMachine) -> None:
        """HOOK_FIRED: DONE, or with rollback_window_s the window opens (WINDOW_OPEN)."""
        cp = self.checkpoint
        assert cp is not None
        length = self.config.move.rollback_window_s
        reverse_from = cp.detail.get("reverse_from")
        if length <= 0:
            await machine.fire("finish")
            return
        if not isinstance(reverse_from, str):
            event(
                "no rollback window: this move's success hook ran before its target position was recorded "
                "(an older version, or the window was configured later); finishing",
                logging.WARNING,
            )
            await machine.fire("finish")
            return
        window = Window.open(self.config.move.name, reverse_from, length)

        async def create(source: Any) -> None:
            database = await feed_state_database(self.config, source, window)
            await reverse_checkpoint(self.config, source, window, database)

        await self._with_reverse_writer(create)
        await machine.fire("open_window", detail=window.detail())
        event("rollback window open", closes_in_s=length, reverse_from=reverse_from)

    async def run(self, machine: MoveMachine) -> None:
        """Run :meth:`_phases` as the driver of the reverse feed (target -> source)."""
        cp = self.checkpoint
        assert cp is not None
        window = Window.from_checkpoint(cp)
        if window is None:
            raise SafetyRefusal(
                f"move {self.config.move.name!r} is in {cp.state.value} but its checkpoint does not say "
                "where the rollback window's reverse feed starts (detail: reverse_from, closes_at, feed). "
                "It was written by hand or by another version; decide by hand whether to finish forward."
            )
        if machine.current is State.ROLLBACK_STARTED:
            await resolve_rollback_started(self.config, machine, window, self.target_flavor)
        self.board.window_closes_at = window.closes_at
        lag = LagMonitor(
            self.config.target, self.target_flavor, self.board, publish=self._reverse_lag, role="target"
        )

        async def feed(source: Any) -> None:
            database = await feed_state_database(self.config, source, window)
            checkpoint = await reverse_checkpoint(self.config, source, window, database)
            pipeline = Pipeline(
                self.config,
                self.schemas,
                reverse_feed(self.config, self.target_flavor, database),
                source_monitor=None,
                writer_conn=source,
                controls=self.controls,
                board=self.board,
                lag=lag,
            )
            self.record.track(pipeline)
            try:
                await pipeline.run(checkpoint, lambda writer: self._phases(machine, window, writer))
            finally:
                self.record.track(None)

        try:
            await self._with_reverse_writer(feed)
        except Exception as exc:
            error = primary_error(exc)
            if self.controls.stop_requested and not isinstance(error, TablemoverError):
                event("reverse feed stopped", logging.DEBUG, detail=repr(exc)[:500])
                return
            if isinstance(error, SafetyRefusal) and machine.current is State.WINDOW_OPEN:
                # Nothing of the rollback has happened: the move stands forward, as it would have
                # without a window. Loud, because the way back is gone.
                event(
                    "the rollback window closes early: the reverse feed cannot go on, so a rollback is no "
                    "longer possible; the move stays on the target",
                    logging.ERROR,
                    error=str(error),
                )
                await machine.fire(
                    "close_window", detail=window.detail(closed=f"reverse feed stopped: {error}")
                )
                return
            raise

    async def _phases(self, machine: MoveMachine, window: Window, writer: TargetWriter) -> None:
        """The phases that run while the reverse feed does: hold the window open, roll back, drain."""
        while machine.current in (State.WINDOW_OPEN, State.ROLLBACK_STARTED):
            if machine.current is State.WINDOW_OPEN and not await hold_open(window, self.controls):
                await machine.fire("close_window", detail=window.detail(closed="the window elapsed"))
                event("rollback window elapsed: the move is done")
                return
            if not await self._rollback(machine, window).run():
                self.controls.rollback_declined()
        assert self.checkpoint is not None
        drain_position = gtid.parse_position(self.target_flavor, self.checkpoint.drain_gtid or "")
        await drain(
            machine, writer, drain_position, self.config.move.drain_timeout_s, "mark_rollback_drained"
        )

    def _reverse_lag(self, lag_s: float) -> None:
        self.board.reverse_lag_s = lag_s

    def _rollback(self, machine: MoveMachine, window: Window) -> Rollback:
        return Rollback(
            self.config,
            machine,
            window,
            self.target_flavor,
            board=self.board,
            timings=self.timings,
            hook_env=lambda: hook_env(self.board),
        )

    async def rollback_hook(self, machine: MoveMachine) -> None:
        """ROLLBACK_DRAINED: run ``on-rollback`` until it exits 0 (ROLLED_BACK)."""
        cp = self.checkpoint
        assert cp is not None
        first = cp.state is State.ROLLBACK_DRAINED and cp.kind == cpstore.KIND_TRANSITION

        async def record_attempt(attempt: int) -> None:
            current = self.checkpoint
            assert current is not None
            await self.record.write(current.evolve(hook_attempts=attempt, kind=cpstore.KIND_PROGRESS))
            self.timings.report_outage(self.board)

        await fire_until_ok(
            self.config,
            "rollback",
            machine,
            "mark_rolled_back",
            0 if first else cp.hook_attempts,
            record_attempt,
            lambda: hook_env(self.board),
        )

    async def _with_reverse_writer(self, use: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``use`` with a writer connection to the source (the reverse feed writes there)."""
        conn = await connect(
            self.config.source,
            "source",
            autocommit=False,
            sql_mode=WRITER_SQL_MODE,
            binary_prefix=True,
            connection="reverse_writer",
        )
        try:
            return await use(conn)
        finally:
            with anyio.CancelScope(shield=True):
                await close(conn)
