"""Runs one move: the phases of spec section 5, in order, entered at the persisted state.

:meth:`Move._walk` is the whole lifecycle on one screen; each phase lives in the module of its
responsibility and takes what it needs as arguments:

==================  =======================================================================
phase               module
==================  =======================================================================
preflight           ``preflight/`` (one check a file)
prepare             ``prepare``: target tables, checkpoint table, start position
copy + apply        ``pipeline`` (``stream`` -> ``apply`` <- ``copy``/``parallel``), until caught up
checksum gate       ``gate.LiveGate`` trailing the copy, finished by ``verify.checksum_gate``
cutover             ``cutover``: postpone gate, blockers, intent, hook, RENAME + position
drain               ``drain``
success hook        ``hooks.fire_success`` (over ``hooks.fire_until_ok``)
rollback window     ``rollback.WindowPhases``, ``window`` (the reverse feed: ``pipeline`` run backwards)
rollback            ``rollback`` (intent, hook, target RENAME), ``drain``, ``rollback.restore_source``
==================  =======================================================================

Around the walk this module owns the move (the lock in ``ownership``), runs it in attempts that
retry transient faults from the last committed checkpoint (``attempts``, with ``retry``'s policy;
the checkpoint rows: ``record``), and records a move that cannot go on. It never knows who asks
about it: the service shell reads the :class:`~tablemover.status.Board` and sends commands through
:class:`~tablemover.controls.Controls`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc

from tablemover import checkpoint as cpstore
from tablemover import gtid, log
from tablemover.apply import TargetWriter
from tablemover.attempts import Attempts, MoveResult
from tablemover.autoinc import carry_back, carry_forward
from tablemover.checkpoint import Checkpoint
from tablemover.claims import check_resume
from tablemover.config import Config
from tablemover.controls import ABORTABLE, Controls
from tablemover.cutover import Cutover, CutoverTimings, resolve_cutover_started
from tablemover.db import ConnectError, current_position
from tablemover.drain import drain
from tablemover.errors import MoveFailed, SafetyRefusal, TablemoverError
from tablemover.flavor import Flavor
from tablemover.hooks import fire_success, run_hooks
from tablemover.indexes import add_deferred_indexes
from tablemover.lag import LagMonitor
from tablemover.log import event
from tablemover.machine import REVERSE_FEED, MoveMachine, State
from tablemover.ownership import MoveLock
from tablemover.pipeline import trailing_gate
from tablemover.preflight import preflight
from tablemover.prepare import prepare
from tablemover.readreplica import ReadSide
from tablemover.record import Connections, Recorder
from tablemover.replicas import preflight_replicas, wait_for_replicas
from tablemover.retry import describe_error, primary_error
from tablemover.rollback import WindowPhases, restore_source
from tablemover.schema import TableSchema
from tablemover.status import Board, hook_env
from tablemover.verify import checksum_gate


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
        self.flavor = Flavor.MARIADB
        self.schemas: dict[str, TableSchema] = {}
        self.lock = MoveLock(config)
        self.lag = LagMonitor(config.source, self.flavor, self.board)
        self.timings = CutoverTimings()
        self.rollback_timings = CutoverTimings(kind="rollback")
        self.target_flavor = Flavor.MARIADB
        self.conns = Connections()  # this attempt's (opened and closed by the attempts)
        self.record = Recorder(config, self.lock, self.board, self.conns)
        self.reads = ReadSide(config, self.board)  # [replica] or [source], per attempt
        self.attempts = Attempts(config, self.controls, self.board, self.record, self._walk, self.reads)
        self._outer_scope: anyio.CancelScope | None = None
        self.controls.on_stop = self._cancel_for_stop

    async def _walk(self, cp: Checkpoint | None) -> MoveResult:
        """The phases in order, entered at the persisted state (which is all "resume" means)."""
        conns = self.conns
        if cp is None:
            # The stream starts at the reader's position ([replica]'s when it reads from one).
            reader = conns.reader if conns.reader is not None else conns.source
            cp = await prepare(
                self.config, self.flavor, self.schemas, reader, conns.target, self.record.state_db
            )
            await self.lock.record_owner()
        else:
            # The row is a claim: checked against its history and the source before acting on it.
            await check_resume(self.config, cp, conns.target, self.target_flavor, self.record.state_db)
            event(
                "resuming move from checkpoint",
                state=cp.state.value,
                applied_gtid=cp.applied_gtid,
                progress={t: [p.rows_copied, p.done] for t, p in cp.progress.items()},
            )
        if cp.state is State.FAILED:
            raise SafetyRefusal(cpstore.failed_message(cp))
        self.board.committed.store(cp)
        machine = MoveMachine(cp.state, self.record.persist)
        if machine.current is State.PREPARED:
            await machine.fire("start_copy")
        if machine.current is State.ABORTED:
            await machine.fire("resume_aborted")
        if machine.current is State.CUTOVER_STARTED:
            await resolve_cutover_started(self.config, machine, conns.source, self.flavor)
        if machine.current in (State.COPYING, State.CUTOVER_STARTED, State.RENAMED):
            await self.attempts.run_forward(self.flavor, self.lag, lambda w: self._live_phases(machine, w))
            if self.controls.abort_requested and machine.current in ABORTABLE:
                await machine.fire("abort")
                return self.attempts.result(
                    machine.current, "aborted by the operator; `tablemover run` resumes the move"
                )
            if self.controls.stop_requested:
                return self.attempts.stopped()
            if machine.current is State.COPYING:
                return self.attempts.result(
                    machine.current, "copied and caught up; stopped before the cutover as asked"
                )
        if machine.current is State.DRAINED:
            # Before the application hears of the switch, and before the hook's first attempt reads
            # the target position a rollback window's reverse feed starts at (autoinc.py).
            await carry_forward(self.config, self.flavor, self.target_flavor)
            # The application is pointed at the target only once its replicas hold the drained
            # rows (and the carried auto-increment): [throttle] target_replicas, issue #27.
            await wait_for_replicas(
                self.config,
                self.target_flavor,
                conns.target,
                self.board,
                lambda: self.controls.throttle_limits,
            )
            await fire_success(
                self.config,
                machine,
                self.board,
                self.timings,
                write=self.record.write,
                position=lambda: current_position(conns.target, self.target_flavor),
                env=lambda: hook_env(self.board),
            )
        window = self._window_phases()
        if machine.current is State.HOOK_FIRED:
            await window.finish_or_open(machine)
        if machine.current in REVERSE_FEED:
            await window.run(machine)  # until the window elapses, or a rollback drained
            if self.controls.stop_requested:
                return self.attempts.stopped()
        if machine.current is State.ROLLBACK_DRAINED:
            await carry_back(self.config, self.flavor, self.target_flavor)
            await restore_source(self.config, self.flavor)
            await window.rollback_hook(machine)
        return self.attempts.result(machine.current, f"move finished in state {machine.current.value}")

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
            await add_deferred_indexes(self.config, self.schemas, self.record.state_db, self.board)
            await run_hooks(self.config, "row-copy-complete", machine.current.value, hook_env(self.board))
            if self.stop_before_cutover:
                return
            await self._cutover(machine, writer).run()  # the checksum gate runs in it, last
        drain_position = gtid.parse_position(self.flavor, writer.checkpoint.drain_gtid or "")
        await drain(machine, writer, drain_position, move.drain_timeout_s)

    def _cutover(self, machine: MoveMachine, writer: TargetWriter) -> Cutover:
        return Cutover(
            self.config,
            machine,
            writer,
            self.conns.source,
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
        # The source side of the checksum is read where the rows were: the attempt's reader.
        return lambda: checksum_gate(self.reads.reading, self.flavor, machine, writer, trailing_gate())

    def _window_phases(self) -> WindowPhases:
        return WindowPhases(
            self.config,
            self.schemas,
            self.target_flavor,
            controls=self.controls,
            board=self.board,
            timings=self.rollback_timings,
            record=self.record,
        )

    def _cancel_for_stop(self) -> None:
        # A running driver is stopped and the writer commits; otherwise everything is cancelled.
        if not self.record.cancel_driver() and self._outer_scope is not None:
            self._outer_scope.cancel()

    async def run(self, shell: Shell) -> MoveResult:
        """Own the move, check it, start ``shell``, and run (or resume) it as far as it goes."""
        # The lock before preflight: a second daemon of this move stops here (exit 2, naming the
        # owner) having read nothing, and the checkpoint preflight reads cannot go stale before
        # this daemon acts on it (another daemon might finish or move on in between).
        with contextlib.suppress(ConnectError):  # preflight names an unreachable target (exit 2)
            await self.lock.acquire(record=False)
        try:
            report = await preflight(self.config)
            # The watched replicas as `check` sees them: one that answers and replicates from
            # elsewhere refuses here (exit 2), before anything changes.
            await preflight_replicas(self.config)
            if not self.lock.held:
                await self.lock.acquire(record=False)
            await self.lock.record_owner()  # only now: a failed preflight has written nothing
        except BaseException:
            await self.lock.release()
            raise
        self.flavor = report.source_info.flavor
        self.target_flavor = report.target_info.flavor
        self.lag.flavor = self.flavor
        self.reads.flavor, self.reads.target_flavor = self.flavor, self.target_flavor
        self.schemas = report.schemas
        self.record.state_db = report.state_database
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
                result = await self.attempts.run(report.checkpoint, self.schemas)
                tg.cancel_scope.cancel()
            if self.controls.abort_requested and result is None:
                return await self.attempts.abort_between_attempts()
            if result is None or (self.controls.stop_requested and not self.controls.abort_requested):
                return self.attempts.stopped()
            return result
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            error = primary_error(exc)
            if not isinstance(error, Exception):
                raise
            log.logger.debug("move failed", exc_info=True)
            if isinstance(error, SafetyRefusal) and error.dooms_move:
                await self.record.failed(error)
            await self._on_failure(error)
            if isinstance(error, TablemoverError):
                raise error from exc
            raise _runtime_failure(error) from exc
        finally:
            await self.lock.release()

    async def _on_failure(self, error: BaseException) -> None:
        """Tell the application side the move stopped on an error (best effort, never masks it)."""
        with anyio.CancelScope(shield=True):
            cp = self.board.committed.checkpoint
            state = cp.state.value if cp is not None else State.PREPARED.value
            env = {**hook_env(self.board), "TABLEMOVER_ERROR": str(error)[:2000]}
            await run_hooks(self.config, "failure", state, env)


def _runtime_failure(exc: BaseException) -> MoveFailed:
    return MoveFailed(
        f"error during the move: {describe_error(exc)}. The checkpoint is intact; run the same command "
        "again to resume once the cause is fixed."
    )
