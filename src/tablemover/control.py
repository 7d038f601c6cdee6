"""The control socket: a unix socket (mode 0660: the service user and its group) where CLI commands
reach the running daemon.

Protocol: one JSON object per connection, one line each way: ``{"cmd": "cutover"}`` ->
``{"ok": true, ...}``. Small on purpose; ``socat - UNIX-CONNECT:/run/tablemover/orders.sock``
works by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream

from tablemover.errors import BadInput, PreflightError
from tablemover.log import event

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT_S = 5.0  # a client that does not finish its one line in time is answered and dropped
REPLY_TIMEOUT_S = 2.0  # a client that does not read its reply cannot hold a stopping daemon up


class ControlServer:
    """Serves requests on the socket until its task group is cancelled."""

    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind (replacing a stale socket file from a killed daemon) and serve."""
        path = Path(self.path)
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        if await daemon_listening(self.path):
            # Never take a live daemon's socket away (a stale file from a killed one is replaced).
            raise PreflightError(
                f"another tablemover daemon answers on the control socket {self.path}: give this move its "
                "own [control] socket (the default /run/tablemover/{name}.sock is per move name)."
            )
        with contextlib.suppress(FileNotFoundError):
            await anyio.Path(path).unlink()
        # Created 0660: our user and its group may steer the move (under systemd, operators join
        # the tablemover group; /run/tablemover is 0750, so nobody else can even reach the socket).
        old_umask = os.umask(0o117)
        try:
            listener = await anyio.create_unix_listener(path)
        finally:
            os.umask(old_umask)
        event("control socket listening", socket=self.path)
        task_status.started()
        try:
            async with listener:
                await listener.serve(self._handle)
        finally:
            # Shielded: this runs while the serve task is being cancelled at shutdown.
            with anyio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await anyio.Path(path).unlink()

    @staticmethod
    async def _call(handler: Handler, request: dict[str, Any]) -> dict[str, Any]:
        # A handler that fails answers with the error: an exception escaping here would end the
        # listener's task group, and with it the daemon, over a status request.
        try:
            return await handler(request)
        except Exception as exc:
            event("control request failed", logging.WARNING, cmd=str(request.get("cmd")), error=repr(exc))
            return {"ok": False, "error": f"the daemon could not answer {request.get('cmd')!r}: {exc!r}"}

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                raw = b""
                with anyio.fail_after(REQUEST_TIMEOUT_S):
                    while not raw.endswith(b"\n") and len(raw) < MAX_REQUEST:
                        raw += await stream.receive()
                request = json.loads(raw)
                if not isinstance(request, dict):
                    raise ValueError('a request is a JSON object such as {"cmd": "status"}')
                handler = self.handlers.get(str(request.get("cmd")))
                if handler is None:
                    reply = {
                        "ok": False,
                        "error": f"unknown command {request.get('cmd')!r}",
                        "commands": sorted(self.handlers),
                    }
                else:
                    reply = await self._call(handler, request)
            # ValueError covers malformed JSON, bytes that are not UTF-8 and non-object requests.
            except (ValueError, RecursionError, TimeoutError, anyio.EndOfStream) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            # Shielded: a command that stops the daemon (abort) may cancel this very task while
            # it answers; the operator must still get the reply that says the command was taken.
            with (
                anyio.move_on_after(REPLY_TIMEOUT_S, shield=True),
                contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError),
            ):
                await stream.send((json.dumps(reply, default=str) + "\n").encode())


async def request(path: str, cmd: str, **args: Any) -> dict[str, Any]:
    """Send one command to the daemon listening on ``path`` and return its reply."""
    try:
        stream = await anyio.connect_unix(path)
    except OSError as exc:
        raise BadInput(
            f"no tablemover daemon is listening on {path} ({exc.strerror or exc}). Is the move running "
            "(`systemctl status tablemover@<move>`), and is [control] socket the same in its config?"
        ) from exc
    async with stream:
        await stream.send((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        raw = b""
        with anyio.fail_after(30):
            while not raw.endswith(b"\n"):
                try:
                    raw += await stream.receive()
                except anyio.EndOfStream:
                    break
    reply: dict[str, Any] = json.loads(raw) if raw else {"ok": False, "error": "empty reply"}
    return reply


async def daemon_listening(path: str) -> bool:
    """Whether a daemon answers on the control socket."""
    try:
        stream = await anyio.connect_unix(path)
    except OSError:
        return False
    await stream.aclose()
    return True
