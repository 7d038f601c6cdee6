"""The move's checkpoint rows as the runner commits them on the target.

A transition's row goes through the running pipeline's writer, in order with the data before it,
or, with no pipeline running, straight onto the attempt's writer connection; either way fenced by
the move's lock. FAILED is written on a fresh connection. Where the rows live (``state_db``) is
found by preflight and again after every fault.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import anyio
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.db import close, connect
from tablemover.errors import SafetyRefusal, TablemoverError, UnreproducibleEvent
from tablemover.log import event
from tablemover.machine import FAILABLE, MoveMachine, State, log_state_change
from tablemover.ownership import MoveLock
from tablemover.pipeline import Pipeline
from tablemover.status import Board


@dataclass
class Connections:
    """The connections of the attempt that runs (all None between attempts)."""

    source: Any = None
    source_monitor: Any = None
    target: Any = None  # the writer's: not autocommit, the writer's sql_mode
    reader: Any = None  # [replica]'s, when this attempt reads from it (tablemover.readreplica)


class Recorder:
    """Commits the move's checkpoint rows; knows which pipeline (forward or reverse) runs."""

    def __init__(self, config: Config, lock: MoveLock, board: Board, conns: Connections) -> None:
        self.config = config
        self.lock = lock
        self.board = board
        self.conns = conns
        # Where the move's checkpoint is: the state schema, or the target schema for a move an
        # earlier version started there; located on the target before the first read of a row.
        self.state_db = config.move.state_database
        self.pipeline: Pipeline | None = None  # the forward or the reverse one, while it runs

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint this process knows of."""
        return self.board.committed.checkpoint

    def track(self, pipeline: Pipeline | None) -> None:
        """``pipeline`` runs from now on (None: none does)."""
        self.pipeline = pipeline

    def cancel_driver(self) -> bool:
        """Stop the running pipeline's driver (its writer then commits); False when none runs."""
        return self.pipeline is not None and self.pipeline.cancel_driver()

    def located(self, state_db: str) -> None:
        """The checkpoint was found (again) in ``state_db``."""
        self.state_db = state_db

    async def persist(self, previous: State, state: State, kwargs: dict[str, Any]) -> None:
        """Commit the checkpoint row of a transition (the machine's ``before`` callback).

        While the pipeline runs the row goes through the writer, in order with the data before it.
        """
        self.board.announce(f"entering {state.value}")
        if self.pipeline is not None and self.pipeline.running:
            await self.pipeline.transition(state, kwargs)
        else:
            assert self.checkpoint is not None
            await self.write(self.checkpoint.evolve(state=state, kind=cpstore.KIND_TRANSITION, **kwargs))
        log_state_change(previous, state)
        faults.hit(f"state.{state.value}")

    async def write(self, cp: Checkpoint) -> None:
        """Commit ``cp`` on the attempt's writer connection."""
        # Fenced like the writer's commits: the row continues the newest one we know (seq), and
        # the lock must still be ours on the connection that commits it.
        try:
            written = await cpstore.write(self.conns.target, self.state_db, cp)
            await self.lock.prove(self.conns.target)
        except TablemoverError:
            with anyio.CancelScope(shield=True), contextlib.suppress(MySQLError, OSError):
                await self.conns.target.rollback()
            raise
        await self.conns.target.commit()
        self.board.committed.store(written)

    async def failed(self, error: SafetyRefusal) -> None:
        """Persist FAILED with the reason, so status, check and the next run repeat it (best effort).

        Written on a fresh connection: the writer's connection may hold the rolled-back remains of
        the transaction that was refused.
        """
        cp = self.checkpoint
        if cp is None or cp.state not in FAILABLE:
            return
        detail = {"reason": str(error), "exit_code": error.exit_code}
        if isinstance(error, UnreproducibleEvent):
            detail.update(gtid=error.gtid, table=error.table, statement=error.statement)
        with anyio.CancelScope(shield=True):
            conn: Any = None
            try:
                conn = await connect(self.config.target, "target")

                async def persist(previous: State, state: State, kwargs: dict[str, Any]) -> None:
                    failed = cp.evolve(state=state, kind=cpstore.KIND_TRANSITION, **kwargs)
                    await self.lock.prove(conn)  # autocommit: proved before, the seq fences after
                    failed = await cpstore.write(conn, self.state_db, failed)
                    self.board.committed.store(failed)
                    log_state_change(previous, state, logging.ERROR)

                await MoveMachine(cp.state, persist).fire("fail", detail=detail)
            except (MySQLError, OSError, TablemoverError) as exc:
                event("could not record FAILED in the checkpoint", logging.WARNING, error=str(exc))
            finally:
                if conn is not None:
                    await close(conn)
