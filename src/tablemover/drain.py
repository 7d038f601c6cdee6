"""T3 of the spec: the drain. After the RENAME, apply until the target holds every source
transaction up to the position read right after it; then the move is DRAINED.

The decision is :func:`drained`; the wait around it never gives up: the source tables are already
renamed, so the only way forward is to finish applying.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from tablemover import faults, gtid
from tablemover.log import event
from tablemover.machine import MoveMachine

if TYPE_CHECKING:
    from tablemover.apply import TargetWriter

WARN_EVERY_S = 10.0


def drained(applied: gtid.GtidPosition, drain: gtid.GtidPosition) -> bool:
    """True once the applied position covers the drain position (the RENAME and all before it)."""
    return gtid.covers(applied, drain)


async def drain(
    machine: MoveMachine,
    writer: TargetWriter,
    target: gtid.GtidPosition,
    timeout_s: float,
    trigger: str = "mark_drained",
) -> None:
    """Wait for the writer to commit up to the drain position ``target``, then fire ``trigger``
    (DRAINED; the rollback's reverse drain records ROLLBACK_DRAINED the same way).

    Past ``timeout_s`` it logs loudly (every few seconds) and keeps going.
    """
    await faults.delay("drain.start")
    started = time.monotonic()
    warned_at = 0.0
    while not drained(writer.committed_position, target):
        with anyio.move_on_after(1.0):
            await writer.committed.wait()
        waited = time.monotonic() - started
        if waited > timeout_s and waited - warned_at > WARN_EVERY_S:
            warned_at = waited
            event(
                "drain is taking longer than drain_timeout_s; still draining",
                logging.WARNING,
                waited_s=round(waited),
                applied=str(writer.committed_position),
                drain_gtid=str(target),
            )
    await machine.fire(trigger)
    event("drained", drain_gtid=str(target), waited_ms=round((time.monotonic() - started) * 1000))
