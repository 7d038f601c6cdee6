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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from tablemover.config import Config
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
from tablemover.db import close, connect, current_position
from tablemover.errors import SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.hooks import run_hooks
from tablemover.log import event
from tablemover.machine import MoveMachine, State
from tablemover.window import Window, rollback_comment

if TYPE_CHECKING:
    from tablemover.status import Board

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
