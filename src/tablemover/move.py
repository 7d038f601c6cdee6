"""Runs one move: preflight, prepare, copy + apply, (cutover), as a list of phases.

The phases are driven by the persisted state: ``run`` reads the newest checkpoint and enters the
machine there, which is all "resume" means.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults, gtid, hooks, log, maintenance, progress
from tablemover.apply import TargetWriter, Transition
from tablemover.blockers import ACCESS_DENIED, METHOD_NONE, detection_method, find_blockers
from tablemover.changes import WorkItem
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config, load_config
from tablemover.control import ControlServer
from tablemover.copy import MAX_CHUNK, MIN_CHUNK, TableCopier
from tablemover.cutover import (
    Inspection,
    RenameOutcome,
    SourceTables,
    current_position,
    inspect_source,
    new_nonce,
    rename_and_capture,
)
from tablemover.db import WRITER_SQL_MODE, ConnectError, close, connect, error_code, execute, query_one
from tablemover.decode import RowDecoder
from tablemover.errors import (
    MoveFailed,
    PreflightError,
    SafetyRefusal,
    TablemoverError,
    UnreproducibleEvent,
)
from tablemover.flavor import Flavor
from tablemover.hooks import run_hooks
from tablemover.http import MetricsSnapshot, StatusServer
from tablemover.lag import LagTracker
from tablemover.log import event
from tablemover.machine import FAILABLE, MoveMachine, State
from tablemover.notify import Notifier
from tablemover.ownership import MoveLock
from tablemover.preflight import preflight
from tablemover.retry import RetryBudget, describe_error, is_transient, primary_error
from tablemover.schema import TableSchema, count_rows_estimate, table_exists
from tablemover.sql import quote_ident, target_create_statement
from tablemover.stream import BinlogStream, StreamSettings, start_position_sql
from tablemover.throttle import Readings, reason_kind, throttle_reason
from tablemover.verify import verify_live

INBOX_SIZE = 64
ABORTABLE = frozenset({State.PREPARED, State.COPYING})
STOP_GRACE_S = 7.0  # systemd's default stop timeout is longer; the spec asks for exit within 10 s
PROGRESS_EVERY_S = 5.0
CAUGHT_UP_LAG_S = 1.0
LAG_SAMPLE_S = 0.1  # how often the source position is read for the lag
BLOCKER_POLL_S = 0.2
MAX_BACKLOG_FOR_CHUNK = 4  # chunks wait for the writer to drain, keeping their shared locks short


@dataclass
class MoveResult:
    """How a run ended."""

    state: State
    rows_copied: int
    events_applied: int
    message: str


class Move:
    """One move's lifecycle in this process."""

    def __init__(self, config: Config, *, stop_before_cutover: bool = False) -> None:
        self.config = config
        self.stop_before_cutover = stop_before_cutover
        self.target_db = config.move.effective_target_database
        self.flavor = Flavor.MARIADB
        self.schemas: dict[str, TableSchema] = {}
        self.target: Any = None
        self.source: Any = None
        self.source_monitor: Any = None
        self.writer: TargetWriter | None = None
        self._inbox: MemoryObjectSendStream[WorkItem | Transition] | None = None
        self._driver_scope: anyio.CancelScope | None = None
        self._outer_scope: anyio.CancelScope | None = None
        self._writer_done = anyio.Event()
        self.stop_requested: str = ""
        self.abort_requested = False
        self.paused = False
        self._unpaused = anyio.Event()
        self._unpaused.set()
        self.chunk_size_override = 0
        self.throttle_limits = config.throttle
        self.throttle_reason = ""
        self.threads_running = (0, 0)
        self.config_path = ""
        self.rows_estimate: dict[str, int] = {}
        self.http_port = 0
        self.notifier = Notifier()
        self.started = time.monotonic()
        self.lag_s = 0.0
        self.lag = LagTracker()
        self.rename_committed_at = 0.0
        self.cutover_released = anyio.Event()
        self.outage_ms: int | None = None
        self.outage_lock_wait_ms: int | None = None  # the part of the outage the RENAME waited
        self.rename_attempts = 0
        self.rename_wait_ms = 0.0  # every RENAME round trip, failed ones (lock timeouts) included
        self.blocker_method = ""
        self.cutover_blockers: list[str] = []
        self.cutover_wait = ""  # why the cutover waits (postponed, blocked), "" when it does not
        self.copy_rate = 0.0  # rows/s copied over the last progress interval
        self.backlog = 0  # items queued for the writer at the last progress report
        self.lock = MoveLock(config)
        self.commits_total = 0  # target commits of the writer over every attempt (retry budget refill)

    # --- entry point ----------------------------------------------------------------------------

    async def run(self) -> MoveResult:
        """Run (or resume) the move as far as this version goes."""
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
        self.schemas = report.schemas
        if report.checkpoint is not None:
            # Known from here on (status, abort, hooks), not only once the first attempt reads it.
            self.checkpoint = report.checkpoint
        result: MoveResult | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._outer_scope = tg.cancel_scope
                await self._start_control(tg)
                await self._start_http(tg)
                tg.start_soon(self.notifier.watchdog)
                state = report.checkpoint.state.value if report.checkpoint else "new move"
                self.notifier.send(READY="1", STATUS=f"preflight passed; {state}")
                await run_hooks(
                    self.config,
                    "startup",
                    (report.checkpoint.state.value if report.checkpoint else State.PREPARED.value),
                    self._hook_env(),
                )
                result = await self._run_with_retries(report.checkpoint)
                tg.cancel_scope.cancel()
            if self.abort_requested and result is None:
                # The abort came while no pipeline ran (start-up, or waiting to retry after a
                # fault), so nothing recorded it: every task has ended, record ABORTED here.
                if not self.lock.held:
                    await self.lock.acquire()  # we dropped it after the fault; never write unowned
                aborted, previous = await maintenance.record_abort(self.config)
                if aborted is None:
                    return MoveResult(
                        State.PREPARED, 0, 0, "aborted before the move started; `tablemover run` starts it"
                    )
                self.checkpoint = aborted
                _state_changed(previous, aborted.state)
                return MoveResult(
                    aborted.state,
                    aborted.rows_copied,
                    aborted.events_applied,
                    "aborted by the operator; `tablemover run` resumes the move",
                )
            if result is None or (self.stop_requested and not self.abort_requested):
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
                    # Between attempts this daemon may not hold the move's lock (its connection
                    # broke), so an operator's offline abort or discard can land: honour it.
                    if previous is not None and cp is None:
                        raise MoveFailed(
                            f"the checkpoint of move {self.config.move.name!r} disappeared from the target "
                            "while this daemon waited to retry (discarded?); it stopped without changing "
                            "anything. `tablemover run` starts the move from scratch."
                        )
                    newly_aborted = previous is not None and previous.state is not State.ABORTED
                    if cp is not None and cp.state is State.ABORTED and newly_aborted:
                        self.checkpoint = cp
                        return MoveResult(
                            cp.state, cp.rows_copied, cp.events_applied, "aborted by the operator"
                        )
                return await self._attempt(cp)
            except BaseException as exc:
                error = primary_error(exc)
                if self.stop_requested or not is_transient(error):
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

    async def _reload_checkpoint(self) -> Checkpoint | None:
        """The newest committed checkpoint, read again after a fault (raises while the target is down)."""
        conn: Any = None
        try:
            conn = await connect(self.config.target, "target")
            return await cpstore.latest(conn, self.target_db, self.config.move.name)
        finally:
            if conn is not None:
                await close(conn)

    async def _attempt(self, cp: Checkpoint | None) -> MoveResult:
        """One try at the move on fresh connections, from checkpoint ``cp`` (None: a new move)."""
        if not self.lock.held:
            await self.lock.acquire()
        try:
            self.source = await connect(self.config.source, "source")
            self.source_monitor = await connect(self.config.source, "source")
            self.target = await connect(
                self.config.target, "target", autocommit=False, sql_mode=WRITER_SQL_MODE, binary_prefix=True
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.lock.keep)
                for table in self.config.move.tables:
                    if table in self.schemas:
                        self.rows_estimate[table] = await count_rows_estimate(
                            self.source, self.config.move.database, self.schemas[table].name
                        )
                result = await self._run(cp)
                tg.cancel_scope.cancel()
            return result
        except BaseException:
            # The lock's connection may be what broke: then it is taken again before the next
            # attempt; a healthy one is kept, so that nobody can take the move in between.
            if not self.stop_requested:
                await self.lock.keep_or_drop()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                for conn in (self.source, self.source_monitor, self.target):
                    if conn is not None:
                        await close(conn)
            self.source = self.source_monitor = self.target = None

    async def _run(self, cp: Checkpoint | None) -> MoveResult:
        if cp is None:
            cp = await self._prepare()
            await self.lock.record_owner()
        else:
            event(
                "resuming move from checkpoint",
                state=cp.state.value,
                applied_gtid=cp.applied_gtid,
                progress={t: [p.rows_copied, p.done] for t, p in cp.progress.items()},
            )
        if cp.state is State.FAILED:
            raise SafetyRefusal(cpstore.failed_message(cp))
        self.checkpoint = cp
        machine = MoveMachine(cp.state, self._persist)
        if machine.current is State.PREPARED:
            await machine.fire("start_copy")
        if machine.current is State.ABORTED:
            await machine.fire("resume_aborted")
        if machine.current is State.CUTOVER_STARTED:
            await self._resolve_cutover_started(machine)
        if machine.current in (State.COPYING, State.CUTOVER_STARTED, State.RENAMED):
            try:
                await self._pipeline(machine)
            except Exception as exc:
                # A stop cancels queries in flight, which asyncmy reports as errors ("Cancelled
                # during execution"); after a stop that is part of stopping, unless it is ours.
                if not self.stop_requested or isinstance(primary_error(exc), TablemoverError):
                    raise
                event("pipeline stopped", logging.DEBUG, detail=repr(exc)[:500])
            if self.abort_requested and machine.current in ABORTABLE:
                await machine.fire("abort")
                return self._result(machine, "aborted by the operator; `tablemover run` resumes the move")
            if self.stop_requested:
                return self._stopped_result()
            if machine.current is State.COPYING:
                return self._result(machine, "copied and caught up; stopped before the cutover as asked")
        if machine.current is State.DRAINED:
            await self._fire_success_hook(machine)
        if machine.current is State.HOOK_FIRED:
            await machine.fire("finish")
        return self._result(machine, f"move finished in state {machine.current.value}")

    async def _record_failed(self, error: SafetyRefusal) -> None:
        """Persist FAILED with the reason, so status, check and the next run repeat it (best effort).

        Written on a fresh connection: the writer's connection may hold the rolled-back remains of
        the transaction that was refused.
        """
        cp = getattr(self, "checkpoint", None)
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
                    await cpstore.write(conn, self.target_db, failed)
                    self.checkpoint = failed
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
            state = self.checkpoint.state.value if hasattr(self, "checkpoint") else State.PREPARED.value
            env = {**self._hook_env(), "TABLEMOVER_ERROR": str(error)[:2000]}
            await run_hooks(self.config, "failure", state, env)

    async def _start_http(self, tg: anyio.abc.TaskGroup) -> None:
        """Serve /status and /metrics when [control] http is set."""
        if not self.config.control.http:
            return
        server = StatusServer(self.config.control.http, self._metrics_snapshot, self._status_document)
        try:
            port = await tg.start(server.serve)
        except OSError as exc:
            raise PreflightError(
                f"cannot serve [control] http on {self.config.control.http}: {exc.strerror or exc}. Pick a "
                'free address (port 0 picks any free port), or "" to switch the HTTP endpoint off.'
            ) from exc
        self.http_port = int(port)

    def _metrics_snapshot(self) -> MetricsSnapshot:
        cp = self.writer.checkpoint if self.writer is not None else getattr(self, "checkpoint", None)
        progress = self.writer.progress if self.writer is not None else (cp.progress if cp else {})
        return MetricsSnapshot(
            move=self.config.move.name,
            state=cp.state.value if cp else State.PREPARED.value,
            rows_copied={t: p.rows_copied for t, p in progress.items()},
            rows_total=dict(self.rows_estimate),
            events_applied=self.writer.events_applied
            if self.writer is not None
            else (cp.events_applied if cp else 0),
            lag_seconds=self.lag_s,
            throttled=bool(self.throttle_reason),
            throttle_reason=reason_kind(self.throttle_reason),
            chunk_size=self.chunk_size_override or self.config.move.chunk_size,
            cutover_outage_ms=self.outage_ms,
            cutover_lock_wait_ms=self.outage_lock_wait_ms,
            hook_runs=dict(hooks.RUNS),
            applied_gtid=cp.applied_gtid if cp else "",
        )

    async def _start_control(self, tg: anyio.abc.TaskGroup) -> None:
        """Serve the control socket; a move that must be released by hand cannot run without it."""
        server = ControlServer(
            self.config.socket_path,
            {
                "status": self._status,
                "cutover": self._release,
                "pause": self._pause,
                "unpause": self._unpause,
                "abort": self._abort,
                "chunk-size": self._set_chunk_size,
            },
        )
        try:
            await tg.start(server.serve)
        except OSError as exc:
            message = f"cannot listen on the control socket {self.config.socket_path}: {exc.strerror or exc}"
            if self.config.move.postpone_cutover:
                raise PreflightError(
                    f"{message}. postpone_cutover = true needs it for `tablemover cutover`: fix [control] "
                    "socket (the directory must be writable by this user) and run again."
                ) from exc
            event(message + "; continuing without it", logging.WARNING)

    async def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        cp = self.writer.checkpoint if self.writer is not None else getattr(self, "checkpoint", None)
        if cp is None:
            # A new move before its first checkpoint (preparing the target): say so, not crash.
            return {
                "ok": True,
                "move": self.config.move.name,
                "state": None,
                "origin": "daemon",
                "source": "daemon",
                "waiting_for": "preparing the move (no checkpoint yet)",
                "tables": {},
            }
        return {
            "ok": True,
            "move": self.config.move.name,
            "state": cp.state.value,
            "applied_gtid": cp.applied_gtid,
            "lag_s": round(self.lag_s, 3),
            "postponed": self.config.move.postpone_cutover and not self.cutover_released.is_set(),
            "paused": self.paused,
            "throttled": bool(self.throttle_reason),
            "throttle_reason": self.throttle_reason,
            "waiting_for": self.cutover_wait or self.throttle_reason,
            "waiting_kind": reason_kind(self.cutover_wait or self.throttle_reason),
            "rows_copied": cp.rows_copied,
            "events_applied": cp.events_applied,
            "origin": "daemon",  # where the answer came from
            "source": "daemon",  # the old name of "origin", kept for one release
            "tables": {
                t: {
                    "rows_copied": cp.progress[t].rows_copied,
                    "rows_total": self.rows_estimate.get(t, 0),
                    "done": cp.progress[t].done,
                }
                for t in self.config.move.tables  # config order, as the operator listed them
                if t in cp.progress
            },
            "cutover_blocked_by": list(self.cutover_blockers),
            **copy_figures(cp, self.rows_estimate, self.copy_rate, waiting=bool(self.throttle_reason)),
            "backlog": self.backlog,
        }

    async def _status_document(self) -> dict[str, Any]:
        """/status: exactly what `status --json` prints (the socket reply without its "ok")."""
        doc = await self._status({})
        doc.pop("ok", None)
        return doc

    async def _pause(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.paused = True
        if self._unpaused.is_set():
            self._unpaused = anyio.Event()
        event("copying paused by the operator (the binlog apply goes on)")
        return {"ok": True, "message": "copying paused; the binlog apply goes on"}

    async def _unpause(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.paused = False
        self._unpaused.set()
        event("copying resumed by the operator")
        return {"ok": True, "message": "copying resumed"}

    async def _set_chunk_size(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            size = int(request.get("value", 0))
        except (TypeError, ValueError):
            size = 0
        if not MIN_CHUNK <= size <= MAX_CHUNK:
            return {"ok": False, "error": f"chunk size must be between {MIN_CHUNK} and {MAX_CHUNK}"}
        self.chunk_size_override = size
        event("chunk size set by the operator", chunk_size=size)
        return {"ok": True, "message": f"chunk size set to {size}"}

    async def _abort(self, _request: dict[str, Any]) -> dict[str, Any]:
        # Before the first attempt has read the checkpoint the state is not known here; run()
        # records ABORTED after the stop, and refuses then (exit 3) if the move was past COPYING.
        cp = self.writer.checkpoint if self.writer is not None else getattr(self, "checkpoint", None)
        state = cp.state if cp is not None else State.PREPARED
        if state not in ABORTABLE:
            return {
                "ok": False,
                "error": f"refused: the move is in {state.value}; from CUTOVER_STARTED on the source "
                "tables may already be renamed, so the move can only go forward",
            }
        self.abort_requested = True
        self.request_stop("abort")
        return {"ok": True, "message": f"aborting in {state.value}; `tablemover run` resumes the move later"}

    async def _release(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.cutover_released.set()
        event("cutover released by the operator")
        return {"ok": True, "message": "cutover released"}

    def _stopped_result(self) -> MoveResult:
        cp = self.checkpoint if hasattr(self, "checkpoint") else None
        state = cp.state if cp is not None else State.PREPARED
        return MoveResult(
            state,
            cp.rows_copied if cp else 0,
            cp.events_applied if cp else 0,
            f"stopped by {self.stop_requested} in state {state.value}; run again to resume",
        )

    def _result(self, machine: MoveMachine, message: str) -> MoveResult:
        cp = self.checkpoint
        return MoveResult(machine.current, cp.rows_copied, cp.events_applied, message)

    # --- PREPARED -------------------------------------------------------------------------------

    async def _prepare(self) -> Checkpoint:
        """Create the target schema, tables and checkpoint table, capture the start position."""
        await execute(self.target, f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.target_db)}")
        await cpstore.ensure_table(self.target, self.target_db)
        created = []
        for table, schema in self.schemas.items():
            if not await table_exists(self.target, self.target_db, table):
                await execute(self.target, target_create_statement(schema.create_statement, self.target_db))
                created.append(table)
                event("created target table", table=f"{self.target_db}.{table}")
        # Rule 1: the stream starts at a position captured before the first chunk is read.
        start = _one_line(await query_one(self.source, start_position_sql(self.flavor)))
        cp = Checkpoint(
            move_name=self.config.move.name,
            state=State.PREPARED,
            kind=cpstore.KIND_TRANSITION,
            applied_gtid=start,
            progress={t: TableProgress() for t in self.config.move.tables},
            # `discard` drops the tables the move created and only empties those it found.
            detail={"flavor": self.flavor.value, "created_tables": created},
        )
        await cpstore.write(self.target, self.target_db, cp)
        await self.target.commit()
        event("prepared move", start_gtid=start, tables=",".join(self.config.move.tables))
        return cp

    async def _persist(self, source: State, dest: State, kwargs: dict[str, Any]) -> None:
        """Commit the checkpoint row of a transition (the machine's ``before`` callback)."""
        self.notifier.send(STATUS=f"entering {dest.value}")
        if self._inbox is not None and self.writer is not None:
            tr = Transition(dest, **kwargs)
            await self._inbox.send(tr)
            await tr.written.wait()
            self.checkpoint = self.writer.checkpoint
            _state_changed(source, dest)
            faults.hit(f"state.{dest.value}")
            return
        cp = self.checkpoint.evolve(state=dest, kind=cpstore.KIND_TRANSITION, **kwargs)
        await cpstore.write(self.target, self.target_db, cp)
        await self.target.commit()
        self.checkpoint = cp
        _state_changed(source, dest)
        faults.hit(f"state.{dest.value}")

    # --- COPYING --------------------------------------------------------------------------------

    async def _pipeline(self, machine: MoveMachine) -> None:
        """Stream + copy + apply; once copied and caught up, cut over and drain (unless asked not to).

        The stream and the writer stay up through the cutover: the drain is the same apply loop
        running until the applied position covers the position read right after the RENAME.
        """
        self._writer_done = anyio.Event()
        send, recv = anyio.create_memory_object_stream[WorkItem | Transition](max_buffer_size=INBOX_SIZE)
        decoders = {t: RowDecoder(s) for t, s in self.schemas.items()}
        writer = TargetWriter(
            self.target, self.target_db, self.schemas, decoders, self.checkpoint, self.flavor
        )
        self.writer, self._inbox = writer, send
        settings = StreamSettings(
            server=self.config.source,
            flavor=self.flavor,
            server_id=self.config.move.effective_replica_server_id,
            database=self.config.move.database,
            own_rename_tag=self.rename_tag,
            report_host=self.config.move.replica_host_tag,
        )
        start = gtid.parse_position(self.flavor, self.checkpoint.applied_gtid)
        stream = BinlogStream(settings, decoders, start, send.clone())
        try:
            async with anyio.create_task_group() as tg:
                # Rule 7: the writer consumes before the stream produces.
                tg.start_soon(self._run_writer, writer, recv)
                tg.start_soon(self._run_stream, stream)
                reporter_done = anyio.Event()
                tg.start_soon(self._report_progress, writer, send, reporter_done)
                sampler = anyio.CancelScope()
                tg.start_soon(self._run_samplers, sampler, writer)
                if progress.wanted():
                    totals = {
                        t: await count_rows_estimate(self.source, self.config.move.database, t)
                        for t in self.config.move.tables
                    }
                    tg.start_soon(
                        progress.show,
                        totals,
                        lambda: {t: (p.rows_copied, p.done) for t, p in writer.progress.items()},
                        reporter_done,
                        lambda: self.cutover_wait or self.throttle_reason,
                    )
                # The driver (copier, catch-up, cutover, drain) is what a stop signal cancels; the
                # writer then applies what is queued and commits at a source boundary.
                with anyio.CancelScope() as self._driver_scope:
                    if self.stop_requested:
                        self._driver_scope.cancel()
                    try:
                        async with anyio.create_task_group() as driver:
                            driver.start_soon(self._copy_tables, writer, send.clone())
                            await self._drive(machine, writer)
                    except (MySQLError, BaseExceptionGroup) as exc:
                        # A stop cancels the driver mid-query, and asyncmy reports that as an error
                        # ("Cancelled during execution"); what the abandoned driver raises then is
                        # part of stopping. The state is unchanged and resumable either way.
                        if not self.stop_requested:
                            raise
                        event("driver stopped", logging.DEBUG, detail=repr(exc)[:500])
                reporter_done.set()
                sampler.cancel()
                stream.stop()
                send.close()
                with anyio.move_on_after(STOP_GRACE_S) as grace:
                    await self._writer_done.wait()
                if grace.cancelled_caught:
                    event(
                        "writer did not finish in time; its open transaction is rolled back", logging.WARNING
                    )
                    tg.cancel_scope.cancel()
        finally:
            self._driver_scope = None
            self.writer, self._inbox = None, None
            self.checkpoint = writer.checkpoint
            self.commits_total += writer.commits

    async def _drive(self, machine: MoveMachine, writer: TargetWriter) -> None:
        if machine.current is not State.RENAMED:
            await self._wait_caught_up(writer)
            event(
                "copy complete and caught up",
                rows_copied=writer.checkpoint.rows_copied,
                events_applied=writer.checkpoint.events_applied,
                **writer.batch_counts(),
            )
            await run_hooks(self.config, "row-copy-complete", machine.current.value, self._hook_env())
            if not self.stop_before_cutover:
                if self.config.move.verify_before_cutover:
                    await self._checksum_gate(machine, writer)
                await self._cutover(machine, writer)
        if machine.current is State.RENAMED:
            await self._drain(machine, writer)

    def request_stop(self, signame: str = "SIGTERM") -> None:
        """Stop soon without changing state: the current batch is committed, then run() returns.

        Safe at any point, mid-cutover included: the next start resumes from the persisted state.
        """
        if self.stop_requested:
            return
        self.stop_requested = signame
        self.notifier.send(STOPPING="1", STATUS=f"{signame}: committing the current batch and stopping")
        then = "then recording ABORTED" if self.abort_requested else "the state is kept"
        event(f"{signame} received: finishing the current batch and stopping; {then}")
        if self._driver_scope is not None:
            self._driver_scope.cancel()
        elif self._outer_scope is not None:
            self._outer_scope.cancel()

    async def _wait_unthrottled(self) -> None:
        """Hold the copier while a throttle condition holds; log each new kind of reason once."""
        while True:
            limits = self.throttle_limits  # re-read every pass: SIGHUP may have replaced it
            flag = bool(limits.flag_file) and await anyio.Path(limits.flag_file).exists()
            readings = Readings(
                self.lag_s, self.threads_running[0], self.threads_running[1], flag, self.paused
            )
            self._set_waiting(throttle_reason(limits, readings))
            if not self.throttle_reason:
                return
            if self.paused:
                with anyio.move_on_after(0.25):
                    await self._unpaused.wait()
            else:
                await anyio.sleep(0.25)

    def _set_waiting(self, reason: str) -> None:
        """Record why the copy waits ("" = it does not); log it when the kind of reason changes.

        The text keeps its figures current (status, progress bar); the log hears of a wait once
        per kind of reason, not on every tick where the lag changed by a few milliseconds.
        """
        if reason_kind(reason) != reason_kind(self.throttle_reason):
            if reason:
                event("copy throttled", reason=reason)
            else:
                event("copy unthrottled", reason=self.throttle_reason)
        self.throttle_reason = reason

    async def _run_samplers(self, scope: anyio.CancelScope, writer: TargetWriter) -> None:
        with scope:
            try:
                async with anyio.create_task_group() as samplers:
                    samplers.start_soon(self._sample_threads_running)
                    samplers.start_soon(self._track_lag, writer)
            except (MySQLError, BaseExceptionGroup):
                # Cancelling a sampler mid-query surfaces as a driver error, not as a cancellation.
                if not scope.cancel_called:
                    raise

    async def _sample_threads_running(self) -> None:
        """Threads_running of both servers, once a second (the throttle reads the latest sample)."""
        sql = "SHOW GLOBAL STATUS LIKE 'Threads_running'"
        conn = await connect(self.config.target, "target")
        try:
            while True:
                src = await query_one(self.source_monitor, sql) if self.source_monitor else None
                dst = await query_one(conn, sql)
                self.threads_running = (int(src[1]) if src else 0, int(dst[1]) if dst else 0)
                await anyio.sleep(1.0)
        finally:
            with anyio.CancelScope(shield=True):
                await close(conn)

    def reload_throttle(self) -> None:
        """SIGHUP: re-read the [throttle] section of the config file (the rest needs a restart)."""
        if not self.config_path:
            return
        try:
            fresh = load_config(self.config_path)
        except TablemoverError as exc:
            event("SIGHUP: config not reloaded", logging.WARNING, error=str(exc))
            return
        self.throttle_limits = fresh.throttle
        event("SIGHUP: throttle settings reloaded", **fresh.throttle.model_dump())

    async def _report_progress(
        self, writer: TargetWriter, send: MemoryObjectSendStream[Any], done: anyio.Event
    ) -> None:
        """Log throughput every few seconds and run on-status periodically."""
        last = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
        last_copied = sum(p.rows_copied for p in writer.progress.values())
        next_status_hook = time.monotonic() + self.config.move.status_hook_interval_s
        while not done.is_set():
            with anyio.move_on_after(min(PROGRESS_EVERY_S, self.config.move.status_hook_interval_s)):
                await done.wait()
            now = (time.monotonic(), writer.rows_written, writer.events_applied, writer.commits)
            elapsed = now[0] - last[0]
            event(
                "progress",
                rows_copied=sum(p.rows_copied for p in writer.progress.values()),
                rows_written_per_s=round((now[1] - last[1]) / elapsed),
                events_per_s=round((now[2] - last[2]) / elapsed),
                commits_per_s=round((now[3] - last[3]) / elapsed),
                backlog=send.statistics().current_buffer_used,
                lag_s=round(self.lag_s, 3),
                applied_gtid=str(writer.committed_position),
            )
            copied = sum(p.rows_copied for p in writer.progress.values())
            self.copy_rate = (copied - last_copied) / elapsed if elapsed > 0 else 0.0
            self.backlog = send.statistics().current_buffer_used
            last, last_copied = now, copied
            self.notifier.send(
                STATUS=f"{writer.checkpoint.state.value}: {copied} rows copied, "
                f"{writer.events_applied} events applied, lag {self.lag_s:.1f} s"
            )
            if now[0] >= next_status_hook and not done.is_set():
                next_status_hook = now[0] + self.config.move.status_hook_interval_s
                state = writer.checkpoint.state.value
                await run_hooks(
                    self.config, "status", state, {**self._hook_env(), "TABLEMOVER_LAG_S": str(self.lag_s)}
                )

    async def _run_writer(
        self, writer: TargetWriter, recv: MemoryObjectReceiveStream[WorkItem | Transition]
    ) -> None:
        try:
            async with recv:
                await writer.run(recv)
        finally:
            self._writer_done.set()

    async def _run_stream(self, stream: BinlogStream) -> None:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(stream.forward)
                try:
                    await anyio.to_thread.run_sync(stream.run, abandon_on_cancel=True)
                finally:
                    stream.finish()
        finally:
            stream.stop()
            await stream.close_sender()

    async def _copy_tables(self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]) -> None:
        async with send:
            readers = 2 if self.config.move.copy_read_ahead else 1
            conns: list[Any] = []
            try:
                for _ in range(readers):
                    conns.append(
                        await connect(self.config.source, "source", autocommit=False, temporal_as_text=True)
                    )
                for table in self.config.move.tables:
                    copier = TableCopier(
                        conns,
                        self.schemas[table],
                        writer.progress.get(table, TableProgress()),
                        self.config.move.chunk_size,
                        send,
                        lambda: self._chunk_allowed(writer, send),
                        adaptive=self.config.move.adaptive_chunk_size,
                        size_override=lambda: self.chunk_size_override,
                    )
                    await copier.run()
                    event("table copied", table=table, rows=writer.progress[table].rows_copied)
            finally:
                for conn in conns:
                    await close(conn)

    async def _chunk_allowed(self, writer: TargetWriter, send: MemoryObjectSendStream[WorkItem]) -> None:
        await self._wait_unthrottled()
        while (queued := send.statistics().current_buffer_used) > MAX_BACKLOG_FOR_CHUNK:
            # The binlog apply goes first: a chunk waits while the writer has a backlog.
            self._set_waiting(f"apply backlog: {queued} batches queued for the writer")
            with anyio.move_on_after(0.05):
                await writer.committed.wait()
        self._set_waiting("")

    async def _wait_caught_up(self, writer: TargetWriter) -> None:
        """Return once every table's copy is committed and the apply lag is under a second.

        The lag tracker must also have seen the writer cover a source position sampled after this
        call began: a busy but keeping-up writer passes, and a stale reading from before does not.
        """
        since = time.monotonic()
        while True:
            copied = all(
                writer.checkpoint.progress.get(t, TableProgress()).done for t in self.config.move.tables
            )
            if copied and self.lag.caught_up_since(since, CAUGHT_UP_LAG_S):
                return
            with anyio.move_on_after(LAG_SAMPLE_S):
                await writer.committed.wait()

    async def _track_lag(self, writer: TargetWriter) -> None:
        """Keep ``lag_s`` current for the whole run (status, metrics, the lag throttle, the gate)."""
        conn = await connect(self.config.source, "source")
        try:
            while True:
                row = await query_one(conn, start_position_sql(self.flavor))
                self.lag.sample(time.monotonic(), gtid.parse_position(self.flavor, _one_line(row)))
                next_sample = time.monotonic() + LAG_SAMPLE_S
                while True:  # until the next sample, re-read the lag at every writer commit
                    self.lag_s = self.lag.update(time.monotonic(), writer.committed_position)
                    remaining = next_sample - time.monotonic()
                    if remaining <= 0:
                        break
                    with anyio.move_on_after(remaining):
                        await writer.committed.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await close(conn)

    # --- CUTOVER_STARTED .. DRAINED ------------------------------------------------------------

    async def _cutover(self, machine: MoveMachine, writer: TargetWriter) -> None:
        """T0..T2 of the spec: gate, intent, before-cutover hook, RENAME + position, RENAMED.

        Returns in RENAMED; a failed hook or a lock timeout goes back to COPYING and tries again
        (bounded by cutover_max_attempts, then the move fails resumably).
        """
        move = self.config.move
        for attempt in range(1, move.cutover_max_attempts + 1):
            await self._gate(writer)
            # Wait for blockers while still in COPYING (abortable, nothing intended yet) ...
            await self._wait_for_blockers()
            if machine.current is State.COPYING:
                nonce = new_nonce()
                await machine.fire("begin_cutover", detail={"nonce": nonce, "attempt": attempt})
            else:
                nonce = str(self.checkpoint.detail.get("nonce") or new_nonce())
            hook = await run_hooks(
                self.config, "before-cutover", State.CUTOVER_STARTED.value, self._hook_env()
            )
            if not hook.ok:
                event(
                    "on-before-cutover hook failed: nothing renamed, back to copying",
                    hook=hook.failed,
                    detail=hook.detail,
                    attempt=attempt,
                )
                await machine.fire("cancel_cutover", detail={"reason": f"hook {hook.failed}: {hook.detail}"})
                await anyio.sleep(min(1.0 * attempt, 30.0))
                continue
            # ... and look again right before the RENAME: the hook may have taken a while.
            await self._wait_for_blockers()
            started = time.monotonic()
            result = await rename_and_capture(self.config, self.flavor, nonce)
            self.rename_attempts += 1
            self.rename_wait_ms += (time.monotonic() - started) * 1000
            if result.outcome is RenameOutcome.LOCK_TIMEOUT:
                event(
                    "RENAME timed out waiting for a lock: nothing renamed, trying again later",
                    lock_wait_timeout_s=move.cutover_lock_timeout_s,
                    attempt=attempt,
                    error=result.error,
                )
                await machine.fire("cancel_cutover", detail={"reason": "lock wait timeout"})
                await anyio.sleep(min(1.0 * attempt, 10.0))
                continue
            drain = result.drain_gtid
            if result.outcome is RenameOutcome.UNKNOWN:
                event("RENAME outcome unknown; inspecting the source", error=result.error)
                if await self._renamed_on_source(machine) is False:
                    continue
                drain = await current_position(self.source, self.flavor)
            self.rename_committed_at = started
            # The successful round trip: the RENAME waiting for its metadata lock, then running.
            self.outage_lock_wait_ms = round((time.monotonic() - started) * 1000)
            await machine.fire("mark_renamed", drain_gtid=drain, detail={"nonce": nonce})
            event("source tables renamed", drain_gtid=drain, renamed=",".join(map(move.renamed, move.tables)))
            return
        raise MoveFailed(
            f"the cutover did not succeed in {move.cutover_max_attempts} attempts (see the log for each "
            "reason); nothing is renamed and the move is resumable: fix the cause and run again."
        )

    async def _checksum_gate(self, machine: MoveMachine, writer: TargetWriter) -> None:
        """The correctness gate before the point of no return: every table, source vs target.

        Runs while the apply goes on, before the intent is written, so it adds nothing to the
        write outage. A difference is real (verify_live compares exactly), so the move does not
        rename anything: back to COPYING, the keys in the log, exit 3 for an operator to look.
        """
        started = time.monotonic()
        event("checksumming every moved table before the cutover (the apply goes on)")

        async def wait_applied(position: gtid.GtidPosition) -> None:
            while not gtid.covers(writer.committed_position, position):
                with anyio.move_on_after(1.0):
                    await writer.committed.wait()

        report = await verify_live(self.config, self.flavor, wait_applied)
        rows = sum(t.source_rows for t in report.tables)
        seconds = time.monotonic() - started
        if report.equal:
            event(
                "checksum before cutover: source and target equal",
                rows=rows,
                seconds=round(seconds, 3),
                seconds_per_million_rows=round(seconds * 1_000_000 / rows, 2) if rows else 0.0,
            )
            return
        differing = {
            t.table: {
                "missing_on_target": t.missing_on_target[:20],
                "extra_on_target": t.extra_on_target[:20],
                "different": t.different[:20],
            }
            for t in report.tables
            if not t.equal
        }
        event("checksum before cutover found differences", logging.ERROR, tables=differing)
        if machine.current is State.CUTOVER_STARTED:
            await machine.fire("cancel_cutover", detail={"reason": "checksum difference"})
        raise SafetyRefusal(
            f"the checksum before the cutover found rows that differ between source and target "
            f"({'; '.join(f'{t}: {d}' for t, d in differing.items())}). Nothing was renamed and the "
            "move stays in COPYING. The target does not hold what the source holds: find out why "
            "(`tablemover verify` names the keys; was the target written to by something else?), "
            "then start the move over (`tablemover discard -c FILE --yes`, then `tablemover run`)."
        )

    async def _wait_for_blockers(self) -> None:
        """Look before you lock: hold the RENAME while a long source transaction would block it.

        A RENAME queued behind a transaction's metadata lock stalls every query on the moved
        tables for as long as it waits; waiting *before* issuing it stalls nothing. Bounded by
        cutover_blocker_wait_s, after which the RENAME is tried anyway (its own lock wait is
        bounded by cutover_lock_timeout_s).
        """
        move = self.config.move
        if self.blocker_method == METHOD_NONE:
            return
        if not self.blocker_method:
            self.blocker_method = await detection_method(self.source, self.flavor)
            event("cutover blocker check", method=self.blocker_method)
        deadline = time.monotonic() + move.cutover_blocker_wait_s
        announced: set[int] = set()
        try:
            while True:
                try:
                    found = await find_blockers(
                        self.source,
                        self.blocker_method,
                        move.database,
                        move.tables,
                        move.cutover_blocker_min_age_s,
                    )
                except MySQLError as exc:
                    if error_code(exc) not in ACCESS_DENIED:
                        raise
                    self.blocker_method = METHOD_NONE
                    event(
                        "cannot see the source's transactions (grant PROCESS to the source user): the "
                        "RENAME is tried without looking first, its lock wait bounded by "
                        "cutover_lock_timeout_s",
                        logging.WARNING,
                        error=describe_error(exc),
                    )
                    return
                self.cutover_blockers = [b.describe() for b in found]
                if not found:
                    return
                self.cutover_wait = f"cutover waits for {len(found)} source transaction(s) to end"
                if {b.thread_id for b in found} - announced:
                    announced |= {b.thread_id for b in found}
                    event(
                        "cutover waits: a source transaction would block the RENAME",
                        logging.WARNING,
                        blockers=self.cutover_blockers,
                        method=self.blocker_method,
                        waits_up_to_s=move.cutover_blocker_wait_s,
                    )
                if time.monotonic() >= deadline:
                    event(
                        "cutover_blocker_wait_s elapsed: trying the RENAME anyway (its lock wait is bounded)",
                        logging.WARNING,
                        blockers=self.cutover_blockers,
                    )
                    return
                await anyio.sleep(BLOCKER_POLL_S)
        finally:
            self.cutover_blockers = []
            self.cutover_wait = ""

    async def _gate(self, writer: TargetWriter) -> None:
        """Wait while the cutover is postponed by the flag file or the apply backlog is too large."""
        flag = self.config.move.postpone_flag_file
        announced = False
        while True:
            await self._wait_caught_up(writer)
            held = self.config.move.postpone_cutover and not self.cutover_released.is_set()
            if held or (flag and await anyio.Path(flag).exists()):
                self.cutover_wait = "cutover postponed: waiting for " + (
                    "`tablemover cutover`" if held else f"{flag} to be removed"
                )
                if not announced:
                    event(
                        "cutover postponed: release it with `tablemover cutover`"
                        + (f" and by removing {flag}" if flag else ""),
                        socket=self.config.socket_path,
                    )
                    await run_hooks(self.config, "begin-postponed", State.COPYING.value, self._hook_env())
                    announced = True
                await anyio.sleep(0.5)
                continue
            self.cutover_wait = ""
            if self.lag_s < self.config.move.drain_timeout_s:
                return

    async def _renamed_on_source(self, machine: MoveMachine) -> bool:
        """After an unanswered RENAME: True if it happened, False if not (back to COPYING)."""
        inspection = await inspect_source(self.config)
        if inspection.verdict is SourceTables.RENAMED:
            return True
        if inspection.verdict is SourceTables.ORIGINAL:
            await machine.fire("cancel_cutover", detail={"reason": "RENAME did not happen"})
            return False
        raise SafetyRefusal(self._ambiguous_message(inspection))

    async def _resolve_cutover_started(self, machine: MoveMachine) -> None:
        """Resume in CUTOVER_STARTED: the intent was written; did the RENAME happen?"""
        inspection = await inspect_source(self.config)
        if inspection.verdict is SourceTables.ORIGINAL:
            event("resume in CUTOVER_STARTED: the source tables are not renamed; redoing the cutover")
            return
        if inspection.verdict is SourceTables.RENAMED:
            # We never saw the position read after the RENAME; the current one is later, so it
            # covers the RENAME and everything before it: a safe over-estimate to drain to.
            drain = await current_position(self.source, self.flavor)
            event("resume in CUTOVER_STARTED: the source tables are renamed; recording it", drain_gtid=drain)
            await machine.fire("mark_renamed", drain_gtid=drain, detail={"recovered": True})
            return
        raise SafetyRefusal(self._ambiguous_message(inspection))

    def _ambiguous_message(self, inspection: Inspection) -> str:
        return (
            f"refusing to continue the cutover of move {self.config.move.name!r}: the source is in neither "
            f"the before nor the after state ({inspection.describe(self.config)}). Someone may have "
            "recreated a table or renamed one by hand. Decide which tables hold the live data, make the "
            "source match either state (all originals, or all renamed), then run again. Nothing was changed."
        )

    async def _drain(self, machine: MoveMachine, writer: TargetWriter) -> None:
        """T3: apply until the applied position covers the drain position, then DRAINED.

        Giving up is never an option here: the source tables are already renamed, so the only way
        forward is to finish applying. Past drain_timeout_s we log loudly and keep going.
        """
        drain = gtid.parse_position(self.flavor, self.checkpoint.drain_gtid or "")
        await faults.delay("drain.start")
        started = time.monotonic()
        warned_at = 0.0
        while not gtid.covers(writer.committed_position, drain):
            with anyio.move_on_after(1.0):
                await writer.committed.wait()
            waited = time.monotonic() - started
            if waited > self.config.move.drain_timeout_s and waited - warned_at > 10:
                warned_at = waited
                event(
                    "drain is taking longer than drain_timeout_s; still draining",
                    logging.WARNING,
                    waited_s=round(waited),
                    applied=str(writer.committed_position),
                    drain_gtid=str(drain),
                )
        await machine.fire("mark_drained")
        event("drained", drain_gtid=str(drain), waited_ms=round((time.monotonic() - started) * 1000))

    # --- DRAINED .. DONE ------------------------------------------------------------------------

    async def _fire_success_hook(self, machine: MoveMachine) -> None:
        """T5: run on-success until it exits 0 (at least once; attempts counted in the checkpoint)."""
        delay = 1.0
        while True:
            attempt = self.checkpoint.hook_attempts + 1
            # Persist the attempt before running the hook: a crash inside it re-runs it with a
            # higher TABLEMOVER_HOOK_ATTEMPT, so the hook can tell and be idempotent.
            await self._write_direct(
                self.checkpoint.evolve(hook_attempts=attempt, kind=cpstore.KIND_PROGRESS)
            )
            if self.rename_committed_at:
                self.outage_ms = round((time.monotonic() - self.rename_committed_at) * 1000)
                event(
                    "cutover outage",
                    outage_ms=self.outage_ms,
                    lock_wait_ms=self.outage_lock_wait_ms,
                    rename_attempts=self.rename_attempts,
                    failed_attempts_wait_ms=round(self.rename_wait_ms - (self.outage_lock_wait_ms or 0)),
                )
            env = self._hook_env()
            env.update(
                {
                    "TABLEMOVER_DRAIN_GTID": self.checkpoint.drain_gtid or "",
                    "TABLEMOVER_HOOK_ATTEMPT": str(attempt),
                }
            )
            faults.hit("hook.before_success")
            result = await run_hooks(self.config, "success", State.DRAINED.value, env)
            if result.ok:
                await machine.fire("mark_hook_fired", hook_attempts=attempt)
                return
            event(
                "on-success hook failed; retrying (the state stays DRAINED)",
                logging.WARNING,
                hook=result.failed,
                detail=result.detail,
                attempt=attempt,
                retry_in_s=delay,
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _write_direct(self, cp: Checkpoint) -> None:
        await cpstore.write(self.target, self.target_db, cp)
        await self.target.commit()
        self.checkpoint = cp

    def _hook_env(self) -> dict[str, str]:
        if not hasattr(self, "checkpoint"):
            return {"TABLEMOVER_ELAPSED_S": str(round(time.monotonic() - self.started))}
        # While the pipeline runs, the writer holds the newest committed checkpoint.
        cp = self.writer.checkpoint if self.writer is not None else self.checkpoint
        return {
            "TABLEMOVER_ROWS_COPIED": str(cp.rows_copied),
            "TABLEMOVER_ELAPSED_S": str(round(time.monotonic() - self.started)),
            "TABLEMOVER_PROGRESS": "100" if cp.copy_done else "0",
            "TABLEMOVER_ETA_S": "0",
        }

    @property
    def rename_tag(self) -> str:
        """The comment prefix our cutover RENAME carries, so the stream can tell it from foreign DDL."""
        return f"tablemover move={self.config.move.name} nonce="


def _state_changed(previous: State, state: State, level: int = logging.INFO) -> None:
    # "state" stays the new state for log readers; "from"/"to" say which way it went.
    event("state changed", level, **{"from": previous.value, "to": state.value, "state": state.value})


def copy_figures(cp: Checkpoint, estimates: dict[str, int], rate: float, *, waiting: bool) -> dict[str, Any]:
    """Totals, percent, rate and ETA of the copy; no ETA while it waits or nothing moves."""
    copied = cp.rows_copied
    total = sum(
        p.rows_copied if p.done else max(p.rows_copied, estimates.get(t, 0)) for t, p in cp.progress.items()
    )
    percent = 100.0 if cp.copy_done else (100.0 * copied / total if total else 0.0)
    remaining = max(total - copied, 0)
    eta = None if waiting or cp.copy_done or rate <= 0 else round(remaining / rate)
    return {
        "rows_total": total,
        "percent_copied": round(min(percent, 100.0), 1),
        "rows_per_s": round(rate) if not cp.copy_done else 0,
        "eta_s": 0 if cp.copy_done else eta,
    }


def _runtime_failure(exc: BaseException) -> MoveFailed:
    return MoveFailed(
        f"error during the move: {describe_error(exc)}. The checkpoint is intact; run the same command "
        "again to resume once the cause is fixed."
    )


def _one_line(row: tuple[Any, ...] | None) -> str:
    # MySQL's gtid_executed contains newlines after commas.
    return str(row[0] if row and row[0] is not None else "").replace("\n", "")
