"""The daemon's service shell around a move: control socket, HTTP status and metrics, systemd
notify, signals.

It talks to the move only through :class:`~tablemover.controls.Controls` (commands in) and a
:class:`~tablemover.status.Board` (figures out), so it can be tested with no move behind it, and
the move never knows who asks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import anyio
import anyio.abc

from tablemover.attempts import MoveResult
from tablemover.config import Config, load_config
from tablemover.control import ControlServer
from tablemover.controls import Controls
from tablemover.errors import PreflightError, TablemoverError
from tablemover.http import MetricsSnapshot, StatusServer
from tablemover.log import event
from tablemover.machine import State
from tablemover.move import Move
from tablemover.notify import Notifier
from tablemover.status import Board, metrics_snapshot, status_document


async def serve(config: Config, *, config_path: str = "", stop_before_cutover: bool = False) -> MoveResult:
    """`tablemover run`: the move, with its service shell around it."""
    controls = Controls(config.throttle)
    board = Board()
    shell = ServiceShell(config, controls, board, config_path=config_path)
    shell.install_signals()
    return await Move(config, controls, board, stop_before_cutover=stop_before_cutover).run(shell)


class ServiceShell:
    """Serves one move's operator interfaces while the move runs."""

    def __init__(self, config: Config, controls: Controls, board: Board, *, config_path: str = "") -> None:
        self.config = config
        self.controls = controls
        self.board = board
        self.config_path = config_path
        self.notifier = Notifier()
        self.http_port = 0
        board.on_announce = lambda text: self.notifier.send(STATUS=text)

    # --- what the move calls ---------------------------------------------------------------------

    async def start(self, tg: anyio.abc.TaskGroup, headline: str) -> None:
        """Listen on the control socket and HTTP, ping systemd's watchdog, then report READY."""
        await self._start_control(tg)
        await self._start_http(tg)
        tg.start_soon(self.notifier.watchdog)
        self.notifier.send(READY="1", STATUS=headline)

    # --- signals ---------------------------------------------------------------------------------

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads [throttle], SIGUSR1 logs every task's stack."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_throttle)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, sig.name)

    def stop(self, reason: str = "SIGTERM") -> None:
        """Ask the move to stop, and tell systemd it is stopping."""
        if not self.controls.stop_requested:
            self.notifier.send(STOPPING="1", STATUS=f"{reason}: committing the current batch and stopping")
        self.controls.request_stop(reason)

    def reload_throttle(self) -> None:
        """SIGHUP: re-read the [throttle] section of the config file (the rest needs a restart)."""
        if not self.config_path:
            return
        try:
            fresh = load_config(self.config_path)
        except TablemoverError as exc:
            event("SIGHUP: config not reloaded", logging.WARNING, error=str(exc))
            return
        self.controls.reload_throttle(fresh.throttle)

    # --- the control socket ----------------------------------------------------------------------

    def handlers(self) -> dict[str, Any]:
        """The control socket's commands."""
        return {
            "status": self._status,
            "cutover": self._release,
            "pause": self._pause,
            "unpause": self._unpause,
            "abort": self._abort,
            "chunk-size": self._set_chunk_size,
            "rollback": self._rollback,
        }

    async def _start_control(self, tg: anyio.abc.TaskGroup) -> None:
        """Serve the control socket; a move that must be released by hand cannot run without it."""
        server = ControlServer(self.config.socket_path, self.handlers())
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
        return {"ok": True, **status_document(self.config, self.board, self.controls)}

    async def _pause(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.controls.pause()
        return {"ok": True, "message": "copying paused; the binlog apply goes on"}

    async def _unpause(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.controls.unpause()
        return {"ok": True, "message": "copying resumed"}

    async def _set_chunk_size(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            size = int(request.get("value", 0))
        except (TypeError, ValueError):
            size = 0
        refused = self.controls.set_chunk_size(size)
        if refused:
            return {"ok": False, "error": refused}
        return {"ok": True, "message": f"chunk size set to {size}"}

    async def _abort(self, _request: dict[str, Any]) -> dict[str, Any]:
        cp = self.board.committed.checkpoint
        state = cp.state if cp is not None else State.PREPARED
        refused = self.controls.abort(state)
        if refused:
            return {"ok": False, "error": refused}
        self.notifier.send(STOPPING="1", STATUS="abort: committing the current batch and stopping")
        return {"ok": True, "message": f"aborting in {state.value}; `tablemover run` resumes the move later"}

    async def _rollback(self, _request: dict[str, Any]) -> dict[str, Any]:
        cp = self.board.committed.checkpoint
        state = cp.state if cp is not None else State.PREPARED
        refused = self.controls.request_rollback(state)
        if refused:
            return {"ok": False, "error": refused}
        return {"ok": True, "message": f"rolling back from {state.value}"}

    async def _release(self, _request: dict[str, Any]) -> dict[str, Any]:
        self.controls.release_cutover()
        return {"ok": True, "message": "cutover released"}

    # --- HTTP ------------------------------------------------------------------------------------

    async def _start_http(self, tg: anyio.abc.TaskGroup) -> None:
        """Serve /status and /metrics when [control] http is set."""
        if not self.config.control.http:
            return
        server = StatusServer(self.config.control.http, self._metrics, self._status_document)
        try:
            port = await tg.start(server.serve)
        except OSError as exc:
            raise PreflightError(
                f"cannot serve [control] http on {self.config.control.http}: {exc.strerror or exc}. Pick a "
                'free address (port 0 picks any free port), or "" to switch the HTTP endpoint off.'
            ) from exc
        self.http_port = int(port)

    def _metrics(self) -> MetricsSnapshot:
        return metrics_snapshot(self.config, self.board, self.controls)

    async def _status_document(self) -> dict[str, Any]:
        """/status: exactly what `status --json` prints (the socket reply without its "ok")."""
        return status_document(self.config, self.board, self.controls)


def dump_tasks() -> None:
    """SIGUSR1: log where every task waits, to diagnose a daemon that seems stuck without stopping it."""
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        event("task stack", task=task.get_name(), stack=" <- ".join(reversed(frames)))
