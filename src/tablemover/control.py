"""The control socket: a unix socket (mode 0600) where CLI commands reach the running daemon.

Protocol: one JSON object per connection, one line each way: ``{"cmd": "cutover"}`` ->
``{"ok": true, ...}``. Small on purpose; ``socat - UNIX-CONNECT:/run/tablemover/orders.sock``
works by hand.
"""

from __future__ import annotations

import contextlib
import json
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
        old_umask = os.umask(0o177)  # the socket is created 0600: only our user may steer the move
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

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                raw = b""
                with anyio.fail_after(5):
                    while not raw.endswith(b"\n") and len(raw) < MAX_REQUEST:
                        raw += await stream.receive()
                request = json.loads(raw)
                handler = self.handlers.get(str(request.get("cmd")))
                if handler is None:
                    reply = {
                        "ok": False,
                        "error": f"unknown command {request.get('cmd')!r}",
                        "commands": sorted(self.handlers),
                    }
                else:
                    reply = await handler(request)
            except (json.JSONDecodeError, TimeoutError, anyio.EndOfStream, AttributeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
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
