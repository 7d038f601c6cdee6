"""Runs one move: the phases of spec section 5, in order, entered at the persisted state.

:meth:`Move._walk` is the whole lifecycle on one screen; each phase lives in the module of its
responsibility and takes what it needs as arguments:

==================  =======================================================================
phase               module
==================  =======================================================================
preflight           ``preflight/`` (one check a file)
prepare             ``prepare``: target tables, checkpoint table, start position
copy + apply        ``pipeline`` (``stream`` -> ``apply`` <- ``copy``), until ``lag`` says caught up
checksum gate       ``verify.checksum_gate``
cutover             ``cutover``: postpone gate, blockers, intent, hook, RENAME + position
drain               ``drain``
success hook        ``hooks.fire_until_ok``
rollback window     ``rollback.WindowPhases``, ``window`` (the reverse feed: ``pipeline`` run backwards)
rollback            ``rollback`` (intent, hook, target RENAME), ``drain``, ``rollback.restore_source``
==================  =======================================================================

Around the walk this module owns the move (the lock in ``ownership``), retries transient faults
from the last committed checkpoint (``retry``), and records a move that cannot go on. It never
knows who asks about it: the service shell reads the :class:`~tablemover.status.Board` and sends
commands through :class:`~tablemover.controls.Controls`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults, gtid, log, maintenance
from tablemover.apply import TargetWriter
from tablemover.autoinc import carry_back, carry_forward
from tablemover.checkpoint import Checkpoint
from tablemover.claims import check_feed, check_recorded, check_source_matches, check_target_matches
from tablemover.config import Config
from tablemover.controls import ABORTABLE, Controls
from tablemover.cutover import Cutover, CutoverTimings, resolve_cutover_started
from tablemover.db import WRITER_SQL_MODE, ConnectError, close, connect, current_position
from tablemover.drain import drain
from tablemover.errors import MoveFailed, SafetyRefusal, TablemoverError, UnreproducibleEvent
from tablemover.flavor import Flavor
from tablemover.hooks import fire_until_ok, run_hooks
from tablemover.indexes import add_deferred_indexes
from tablemover.lag import LagMonitor
from tablemover.log import event
from tablemover.machine import FAILABLE, REVERSE_FEED, MoveMachine, State
from tablemover.ownership import MoveLock
from tablemover.pipeline import Pipeline, forward_feed
from tablemover.preflight import preflight
from tablemover.prepare import prepare
from tablemover.replicas import wait_for_replicas
from tablemover.retry import RetryBudget, describe_error, is_transient, primary_error
from tablemover.rollback import WindowPhases, restore_source
from tablemover.schema import TableSchema, count_rows_estimate
from tablemover.status import Board, hook_env
from tablemover.verify import checksum_gate


@dataclass
class MoveResult:
    """How a run ended."""

    state: State
    rows_copied: int
    events_applied: int
    message: str


class Shell(Protocol):
    """Whatever serves the move to the outside, started once the move is owned and preflight passed."""

    async def start(self, tg: anyio.abc.TaskGroup, headline: str) -> None:
        """Start serving in ``tg``; ``headline`` says where the move stands."""


class Move:
    """One move's run in this process: owns the move, walks its phases, rides through faults."""

    def __init__(
        self,
        config: Config,
        controls: Controls | None = None,
        board: Board | None = None,
        *,
        stop_before_cutover: bool = False,
    ) -> None:
        self.config = config
        self.controls = controls or Controls(config.throttle)
        self.board = board or Board()
        self.stop_before_cutover = stop_before_cutover
        self.target_db = config.move.effective_target_database
        # Where the move's checkpoint is: the state schema, or the target schema for a move an
        # earlier version started there; located on the target before the first read of a row.
        self.state_db = config.move.state_database
        self.flavor = Flavor.MARIADB
        self.schemas: dict[str, TableSchema] = {}
        self.lock = MoveLock(config)
        self.lag = LagMonitor(config.source, self.flavor, self.board)
        self.timings = CutoverTimings()
        self.rollback_timings = CutoverTimings(kind="rollback")
        self.target_flavor = Flavor.MARIADB
        self.commits_total = 0  # target commits over every attempt (the retry budget refills on them)
        self.source: Any = None
        self.source_monitor: Any = None
        self.target: Any = None
        self._pipeline: Pipeline | None = None  # the forward or the reverse one, while it runs
        self._outer_scope: anyio.CancelScope | None = None
        self.controls.on_stop = self._cancel_for_stop

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint this process knows of."""
        return self.board.committed.checkpoint

    # --- the lifecycle ---------------------------------------------------------------------------

    async def _walk(self, cp: Checkpoint | None) -> MoveResult:
        """The phases in order, entered at the persisted state (which is all "resume" means)."""
        if cp is None:
            cp = await prepare(
                self.config, self.flavor, self.schemas, self.source, self.target, self.state_db
            )
            await self.lock.record_owner()
        else:
            # The row is a claim: checked against its history and the source before acting on it.
            await check_recorded(self.config, self.target, self.state_db)
            await check_source_matches(self.config, cp.state)
            await check_target_matches(self.config, cp.state)
            await check_feed(self.config, cp, self.target, self.target_flavor)
            event(
                "resuming move from checkpoint",
                state=cp.state.value,
                applied_gtid=cp.applied_gtid,
                progress={t: [p.rows_copied, p.done] for t, p in cp.progress.items()},
            )
        if cp.state is State.FAILED:
            raise SafetyRefusal(cpstore.failed_message(cp))
        self.board.committed.store(cp)
        machine = MoveMachine(cp.state, self._persist)
        if machine.current is State.PREPARED:
            await machine.fire("start_copy")
        if machine.current is State.ABORTED:
            await machine.fire("resume_aborted")
        if machine.current is State.CUTOVER_STARTED:
            await resolve_cutover_started(self.config, machine, self.source, self.flavor)
        if machine.current in (State.COPYING, State.CUTOVER_STARTED, State.RENAMED):
            await self._run_pipeline(machine)
            if self.controls.abort_requested and machine.current in ABORTABLE:
                await machine.fire("abort")
                return self._result(machine, "aborted by the operator; `tablemover run` resumes the move")
            if self.controls.stop_requested:
                return self._stopped_result()
            if machine.current is State.COPYING:
                return self._result(machine, "copied and caught up; stopped before the cutover as asked")
        if machine.current is State.DRAINED:
            # Before the application hears of the switch, and before the hook's first attempt reads
            # the target position a rollback window's reverse feed starts at (autoinc.py).
            await carry_forward(self.config, self.flavor, self.target_flavor)
            # The application is pointed at the target only once its replicas hold the drained
            # rows (and the carried auto-increment): [throttle] target_replicas, issue #27.
            await wait_for_replicas(
                self.config,
                self.target_flavor,
                self.target,
                self.board,
                lambda: self.controls.throttle_limits,
            )
            await self._success_hook(machine)
        window = self._window_phases()
        if machine.current is State.HOOK_FIRED:
            await window.finish_or_open(machine)
        if machine.current in REVERSE_FEED:
            await window.run(machine)  # until the window elapses, or a rollback drained
            if self.controls.stop_requested:
                return self._stopped_result()
        if machine.current is State.ROLLBACK_DRAINED:
            await carry_back(self.config, self.flavor, self.target_flavor)
            await restore_source(self.config, self.flavor)
            await window.rollback_hook(machine)
        return self._result(machine, f"move finished in state {machine.current.value}")

    async def _live_phases(self, machine: MoveMachine, writer: TargetWriter) -> None:
        """The phases that run while the stream and the writer do: catch up, gate, cutover, drain."""
        move = self.config.move
        if machine.current is not State.RENAMED:
            await self.lag.wait_caught_up(writer, move.tables)
            event(
                "copy complete and caught up",
                rows_copied=writer.checkpoint.rows_copied,
                events_applied=writer.checkpoint.events_applied,
                **writer.batch_counts(),
            )
            # With defer_secondary_indexes: one ALTER per table, beside the running writer (indexes.py).
            await add_deferred_indexes(self.config, self.schemas, self.state_db, self.board)
            await run_hooks(self.config, "row-copy-complete", machine.current.value, hook_env(self.board))
            if self.stop_before_cutover:
                return
            await self._cutover(machine, writer).run()  # the checksum gate runs in it, last
        drain_position = gtid.parse_position(self.flavor, writer.checkpoint.drain_gtid or "")
        await drain(machine, writer, drain_position, move.drain_timeout_s)

    # --- phase plumbing --------------------------------------------------------------------------

    async def _run_pipeline(self, machine: MoveMachine) -> None:
        """Run :meth:`_live_phases` as the driver of a pipeline on this attempt's connections."""
        assert self.checkpoint is not None
        self._pipeline = Pipeline(
            self.config,
            self.schemas,
            forward_feed(self.config, self.flavor, self.state_db),
            source_monitor=self.source_monitor,
            writer_conn=self.target,
            controls=self.controls,
            board=self.board,
            lag=self.lag,
            fence=self.lock,
        )
        try:
            await self._pipeline.run(self.checkpoint, lambda writer: self._live_phases(machine, writer))
        except Exception as exc:
            # A stop cancels queries in flight, which asyncmy reports as errors ("Cancelled during
            # execution"); after a stop that is part of stopping, unless it is ours.
            if not self.controls.stop_requested or isinstance(primary_error(exc), TablemoverError):
                raise
            event("pipeline stopped", logging.DEBUG, detail=repr(exc)[:500])
        finally:
            self.commits_total += self._pipeline.commits
            self._pipeline = None

    def _cutover(self, machine: MoveMachine, writer: TargetWriter) -> Cutover:
        return Cutover(
            self.config,
            machine,
            writer,
            self.source,
            lag=self.lag,
            controls=self.controls,
            board=self.board,
            timings=self.timings,
            hook_env=lambda: hook_env(self.board),
            gate=self._gate(machine, writer),
        )

    def _gate(self, machine: MoveMachine, writer: TargetWriter) -> Callable[[], Awaitable[None]] | None:
        if not self.config.move.verify_before_cutover:
            return None
        return lambda: checksum_gate(self.config, self.flavor, machine, writer)

    async def _success_hook(self, machine: MoveMachine) -> None:
        cp = self.checkpoint
        assert cp is not None

        async def record_attempt(attempt: int) -> None:
            current = self.checkpoint
            assert current is not None
            # The target's position before the application hears of the switch: where a rollback
            # window's reverse feed starts. Read once; a crash inside the hook keeps the first.
            reverse_from = current.detail.get("reverse_from") or await current_position(
                self.target, self.target_flavor
            )
            row = current.evolve(
                hook_attempts=attempt, kind=cpstore.KIND_PROGRESS, detail={"reverse_from": reverse_from}
            )
            await self._write(row)
            self.timings.report_outage(self.board)

        def env() -> dict[str, str]:
            return {**hook_env(self.board), "TABLEMOVER_DRAIN_GTID": cp.drain_gtid or ""}

        await fire_until_ok(
            self.config, "success", machine, "mark_hook_fired", cp.hook_attempts, record_attempt, env
        )

    def _window_phases(self) -> WindowPhases:
        return WindowPhases(
            self.config,
            self.schemas,
            self.target_flavor,
            controls=self.controls,
            board=self.board,
            timings=self.rollback_timings,
            write=self._write,
            track=self._track,
        )

    def _track(self, pipeline: Pipeline | None) -> None:
        self._pipeline = pipeline

    async def _persist(self, previous: State, state: State, kwargs: dict[str, Any]) -> None:
        """Commit the checkpoint row of a transition (the machine's ``before`` callback).

        While the pipeline runs the row goes through the writer, in order with the data before it.
        """
        self.board.announce(f"entering {state.value}")
        if self._pipeline is not None and self._pipeline.running:
            await self._pipeline.transition(state, kwargs)
        else:
            assert self.checkpoint is not None
            await self._write(self.checkpoint.evolve(state=state, kind=cpstore.KIND_TRANSITION, **kwargs))
        _state_changed(previous, state)
        faults.hit(f"state.{state.value}")

    async def _write(self, cp: Checkpoint) -> None:
        # Fenced like the writer's commits: the row continues the newest one we know (seq), and
        # the lock must still be ours on the connection that commits it.
        try:
            written = await cpstore.write(self.target, self.state_db, cp)
            await self.lock.prove(self.target)
        except TablemoverError:
            with anyio.CancelScope(shield=True), contextlib.suppress(MySQLError, OSError):
                await self.target.rollback()
            raise
        await self.target.commit()
        self.board.committed.store(written)

    def _cancel_for_stop(self) -> None:
        # A running driver is stopped and the writer commits; otherwise everything is cancelled.
        if self._pipeline is not None and self._pipeline.cancel_driver():
            return
        if self._outer_scope is not None:
            self._outer_scope.cancel()

    # --- owning the move: lock, preflight, the shell, failure ------------------------------------

    async def run(self, shell: Shell) -> MoveResult:
        """Own the move, check it, start ``shell``, and run (or resume) it as far as it goes."""
        # The lock before preflight: a second daemon of this move stops here (exit 2, naming the
        # owner) having read nothing, and the checkpoint preflight reads cannot go stale before
        # this daemon acts on it (another daemon might finish or move on in between).
        with contextlib.suppress(ConnectError):  # preflight names an unreachable target (exit 2)
            await self.lock.acquire(record=False)
        try:
            report = await preflight(self.config)
            if not self.lock.held:
                await self.lock.acquire(record=False)
            await self.lock.record_owner()  # only now: a failed preflight has written nothing
        except BaseException:
            await self.lock.release()
            raise
        self.flavor = report.source_info.flavor
        self.target_flavor = report.target_info.flavor
        self.lag.flavor = self.flavor
        self.schemas = report.schemas
        self.state_db = report.state_database
        if report.checkpoint is not None:
            # Known from here on (status, abort, hooks), not only once the first attempt reads it.
            self.board.committed.store(report.checkpoint)
        state = report.checkpoint.state if report.checkpoint else None
        result: MoveResult | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._outer_scope = tg.cancel_scope
                await shell.start(tg, f"preflight passed; {state.value if state else 'new move'}")
                await run_hooks(self.config, "startup", (state or State.PREPARED).value, hook_env(self.board))
                result = await self._run_with_retries(report.checkpoint)
                tg.cancel_scope.cancel()
            if self.controls.abort_requested and result is None:
                return await self._abort_between_attempts()
            if result is None or (self.controls.stop_requested and not self.controls.abort_requested):
                return self._stopped_result()
            return result
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            error = primary_error(exc)
            if not isinstance(error, Exception):
                raise
            log.logger.debug("move failed", exc_info=True)
            if isinstance(error, SafetyRefusal) and error.dooms_move:
                await self._record_failed(error)
            await self._on_failure(error)
            if isinstance(error, TablemoverError):
                raise error from exc
            raise _runtime_failure(error) from exc
        finally:
            await self.lock.release()

    async def _abort_between_attempts(self) -> MoveResult:
        """The abort came while no pipeline ran (start-up, or waiting to retry after a fault), so
        nothing recorded it: every task has ended, record ABORTED here."""
        if not self.lock.held:
            await self.lock.acquire()  # we dropped it after the fault; never write unowned
        aborted, previous = await maintenance.record_abort(self.config)
        if aborted is None:
            return MoveResult(
                State.PREPARED, 0, 0, "aborted before the move started; `tablemover run` starts it"
            )
        self.board.committed.store(aborted)
        _state_changed(previous, aborted.state)
        return MoveResult(
            aborted.state,
            aborted.rows_copied,
            aborted.events_applied,
            "aborted by the operator; `tablemover run` resumes the move",
        )

    async def _run_with_retries(self, cp: Checkpoint | None) -> MoveResult:
        """Run attempts until one ends; a transient error restarts from the last committed checkpoint.

        The budget is per outage: an attempt that committed work on the target (or ran for a whole
        budget) refills it, so a daemon rides through any number of separate faults but gives up
        (exit 1) on one that lasts. Reading the checkpoint again is part of the next attempt: a
        target that is still down fails it, and the same budget decides.
        """
        budget = RetryBudget(self.config.move.retry_budget_s)
        retrying = False
        while True:
            commits_before = self.commits_total
            started = time.monotonic()
            try:
                if retrying:
                    previous, cp = cp, await self._reload_checkpoint()
                    ended = self._ended_while_waiting(previous, cp)
                    if ended is not None:
                        return ended
                return await self._attempt(cp)
            except BaseException as exc:
                error = primary_error(exc)
                if self.controls.stop_requested or not is_transient(error):
                    raise
                budget.attempt_failed(
                    committed=self.commits_total > commits_before, lasted_s=time.monotonic() - started
                )
                delay = budget.next_delay()
                if delay is None:
                    last = describe_error(error).rstrip(".")
                    raise MoveFailed(
                        f"gave up after {budget.attempts} retries over {budget.elapsed_s:.0f} s "
                        f"(retry_budget_s = {budget.limit_s:g}); last error: {last}. "
                        "The checkpoint is intact; run the same command again to resume once the "
                        "cause is fixed."
                    ) from exc
                event(
                    "transient error; retrying from the last committed checkpoint",
                    logging.WARNING,
                    error=describe_error(error),
                    attempt=budget.attempts,
                    retry_in_s=round(delay, 2),
                    outage_s=round(budget.elapsed_s, 1),
                )
                await anyio.sleep(delay)
                retrying = True

    def _ended_while_waiting(self, previous: Checkpoint | None, cp: Checkpoint | None) -> MoveResult | None:
        """Between attempts this daemon may not hold the move's lock (its connection broke), so an
        operator's offline abort or discard can land: honour it."""
        if previous is not None and cp is None:
            raise MoveFailed(
                f"the checkpoint of move {self.config.move.name!r} disappeared from the target "
                "while this daemon waited to retry (discarded?); it stopped without changing "
                "anything. `tablemover run` starts the move from scratch."
            )
        newly_aborted = previous is not None and previous.state is not State.ABORTED
        if cp is not None and cp.state is State.ABORTED and newly_aborted:
            self.board.committed.store(cp)
            return MoveResult(cp.state, cp.rows_copied, cp.events_applied, "aborted by the operator")
        return None

    async def _reload_checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint, read again after a fault (raises while the target is down)."""
        conn: Any = None
        try:
            conn = await connect(self.config.target, "target")
            self.state_db = await cpstore.locate_move(conn, self.config.move)
            return await cpstore.latest(conn, self.state_db, self.config.move.name)
        finally:
            if conn is not None:
                await close(conn)

    async def _attempt(self, cp: Checkpoint | None) -> MoveResult:
        """One try at the move on fresh connections, from checkpoint ``cp`` (None: a new move)."""
        if not self.lock.held:
            await self.lock.acquire()
        try:
            self.source = await connect(self.config.source, "source", connection="main")
            self.source_monitor = await connect(self.config.source, "source", connection="monitor")
            self.target = await connect(
                self.config.target,
                "target",
                autocommit=False,
                sql_mode=WRITER_SQL_MODE,
                binary_prefix=True,
                connection="writer",
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.lock.keep)
                for table in self.config.move.tables:
                    if table in self.schemas:
                        self.board.rows_estimate[table] = await count_rows_estimate(
                            self.source, self.config.move.database, self.schemas[table].name
                        )
                result = await self._walk(cp)
                tg.cancel_scope.cancel()
            return result
        except BaseException:
            # The lock's connection may be what broke: then it is taken again before the next
            # attempt; a healthy one is kept, so that nobody can take the move in between.
            if not self.controls.stop_requested:
                await self.lock.keep_or_drop()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                for conn in (self.source, self.source_monitor, self.target):
                    if conn is not None:
                        await close(conn)
            self.source = self.source_monitor = self.target = None

    async def _record_failed(self, error: SafetyRefusal) -> None:
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
                    _state_changed(previous, state, logging.ERROR)

                await MoveMachine(cp.state, persist).fire("fail", detail=detail)
            except (MySQLError, OSError, TablemoverError) as exc:
                event("could not record FAILED in the checkpoint", logging.WARNING, error=str(exc))
            finally:
                if conn is not None:
                    await close(conn)

    async def _on_failure(self, error: BaseException) -> None:
        """Tell the application side the move stopped on an error (best effort, never masks it)."""
        with anyio.CancelScope(shield=True):
            cp = self.checkpoint
            state = cp.state.value if cp is not None else State.PREPARED.value
            env = {**hook_env(self.board), "TABLEMOVER_ERROR": str(error)[:2000]}
            await run_hooks(self.config, "failure", state, env)

    def _stopped_result(self) -> MoveResult:
        cp = self.checkpoint
        state = cp.state if cp is not None else State.PREPARED
        return MoveResult(
            state,
            cp.rows_copied if cp else 0,
            cp.events_applied if cp else 0,
            f"stopped by {self.controls.stop_requested} in state {state.value}; run again to resume",
        )

    def _result(self, machine: MoveMachine, message: str) -> MoveResult:
        cp = self.checkpoint
        assert cp is not None
        return MoveResult(machine.current, cp.rows_copied, cp.events_applied, message)


def _state_changed(previous: State, state: State, level: int = logging.INFO) -> None:
    # "state" stays the new state for log readers; "from"/"to" say which way it went.
    event("state changed", level, **{"from": previous.value, "to": state.value, "state": state.value})


def _runtime_failure(exc: BaseException) -> MoveFailed:
    return MoveFailed(
        f"error during the move: {describe_error(exc)}. The checkpoint is intact; run the same command "
        "again to resume once the cause is fixed."
    )
