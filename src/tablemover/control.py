"""The control socket: a unix socket (mode 0660: the service user and its group) where CLI commands
reach the running daemon.

Protocol: one JSON object per connection, one line each way: ``{"cmd": "cutover"}`` ->
``{"ok": true, ...}``. Small on purpose; ``socat - UNIX-CONNECT:/run/tablemover/orders.sock``
works by hand. The request line ends at its first newline, or where the client closes its side.

Whatever a client sends gets an answer or a closed connection, never a dead daemon: a request line
is read within REQUEST_TIMEOUT_S in all (bytes trickling in do not extend it) and up to MAX_REQUEST
bytes; it must be UTF-8 JSON and an object. ``tests/unit/test_control.py`` feeds the parser
malformed, slow, oversized and binary requests. :func:`serve_connections` is the accept loop of both
this socket and the HTTP endpoint (``tablemover.http``).
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
from anyio.abc import Listener, SocketListener, SocketStream
from anyio.streams.stapled import MultiListener

from tablemover.errors import BadInput, MoveFailed, PreflightError
from tablemover.log import event

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024  # bytes of one request line, without its newline; a longer one is refused
REQUEST_TIMEOUT_S = 5.0  # a client that does not finish its one line in time is answered and dropped
REPLY_TIMEOUT_S = 2.0  # a client that does not read its reply cannot hold a stopping daemon up
MAX_CONNECTIONS = 16  # connections served at once; more wait in the kernel's backlog
ACCEPT_RETRY_S = 0.1  # pause after a failed accept() (EMFILE under a flood) before the next one


class _BadRequest(Exception):
    """A request that cannot be read; its message goes into the reply."""


async def serve_connections(
    listener: SocketListener | MultiListener[SocketStream],
    handler: Callable[[SocketStream], Awaitable[None]],
    *,
    limit: int,
    what: str,
) -> None:
    """Run ``handler`` on every accepted connection, at most ``limit`` at a time, until cancelled.

    This is anyio's ``Listener.serve`` without its two ways to end, each of which would end the task
    group the server runs in (the daemon's, so the move): an ``accept()`` that fails (EMFILE when a
    flood of connections uses up the file descriptors) and a handler that raises. Here a failed
    accept is logged once per streak and retried after ACCEPT_RETRY_S, and a failing handler is
    logged and its connection closed. At ``limit`` connections no more are accepted until one ends:
    the others wait in the kernel's backlog without taking file descriptors. A MultiListener (a TCP
    listener on every interface, IPv4 and IPv6) gets one accept loop per socket, sharing the limit.
    """
    slots = anyio.Semaphore(limit)

    async def run(stream: SocketStream) -> None:
        try:
            await handler(stream)
        except Exception as exc:
            event(f"{what}: a connection failed", logging.WARNING, error=repr(exc))
            await anyio.aclose_forcefully(stream)
        finally:
            slots.release()

    async def accept_loop(one: SocketListener, tg: anyio.abc.TaskGroup) -> None:
        failures = 0
        while True:
            await slots.acquire()
            try:
                stream = await one.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                slots.release()
                if not failures:
                    event(
                        f"{what}: accepting a connection failed, retrying", logging.WARNING, error=repr(exc)
                    )
                failures += 1
                await anyio.sleep(ACCEPT_RETRY_S)
                continue
            if failures:
                event(f"{what}: accepting connections again", failed_accepts=failures)
                failures = 0
            tg.start_soon(run, stream)

    async with anyio.create_task_group() as tg:
        for one in _socket_listeners(listener):
            tg.start_soon(accept_loop, one, tg)


def _socket_listeners(listener: Listener[SocketStream]) -> list[SocketListener]:
    if isinstance(listener, MultiListener):
        return [one for inner in listener.listeners for one in _socket_listeners(inner)]
    if not isinstance(listener, SocketListener):
        raise TypeError(f"not a socket listener: {listener!r}")
    return [listener]


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
                await serve_connections(listener, self._handle, limit=MAX_CONNECTIONS, what="control socket")
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
            cmd: Any = None
            try:
                request = await _read_request(stream)
                cmd = request.get("cmd")
                handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
                if handler is None:
                    reply = {
                        "ok": False,
                        "error": f"unknown command {cmd!r}",
                        "commands": sorted(self.handlers),
                    }
                else:
                    reply = await self._call(handler, request)
            except _BadRequest as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return  # the client is gone while we read: nobody to answer
            try:
                data = (json.dumps(reply, default=str) + "\n").encode()
            except (TypeError, ValueError, RecursionError) as exc:  # a handler's reply that is not JSON
                event("control reply not encodable", logging.WARNING, cmd=str(cmd), error=repr(exc))
                error = f"the daemon could not encode its reply to {cmd!r}: {exc!r}"
                data = (json.dumps({"ok": False, "error": error}) + "\n").encode()
            # Shielded: a command that stops the daemon (abort) may cancel this very task while
            # it answers; the operator must still get the reply that says the command was taken.
            with (
                anyio.move_on_after(REPLY_TIMEOUT_S, shield=True),
                contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError),
            ):
                await stream.send(data)


async def _read_request(stream: SocketStream) -> dict[str, Any]:
    """The request object; :class:`_BadRequest` says why there is none.

    The request line ends at its first newline or where the client closes its side; bytes after
    the newline are ignored (one request per connection). The whole line must come within
    REQUEST_TIMEOUT_S, however slowly its bytes trickle in, and be at most MAX_REQUEST bytes.
    """
    raw = b""
    with anyio.move_on_after(REQUEST_TIMEOUT_S) as scope:
        while b"\n" not in raw and len(raw) <= MAX_REQUEST:
            try:
                raw += await stream.receive(MAX_REQUEST + 1 - len(raw))
            except anyio.EndOfStream:
                if not raw:
                    raise _BadRequest("the connection was closed before a request") from None
                break
    line = raw.split(b"\n", 1)[0]
    if len(line) > MAX_REQUEST:
        raise _BadRequest(f"request longer than {MAX_REQUEST} bytes")
    if scope.cancelled_caught:
        raise _BadRequest(f"no complete request line within {REQUEST_TIMEOUT_S:g} s")
    try:
        request = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadRequest("the request is not UTF-8") from None
    # ValueError: not JSON, or an integer too long to convert; RecursionError: nested too deep.
    except (ValueError, RecursionError) as exc:
        raise _BadRequest(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise _BadRequest('a request is a JSON object such as {"cmd": "status"}')
    return request


async def request(path: str, cmd: str, **args: Any) -> dict[str, Any]:
    """Send one command to the daemon listening on ``path`` and return its reply."""
    try:
        stream = await anyio.connect_unix(path)
    except OSError as exc:
        raise BadInput(
            f"no tablemover daemon is listening on {path} ({exc.strerror or exc}). Is the move running "
            "(`systemctl status tablemover@<move>`), and is [control] socket the same in its config?"
        ) from exc
    raw = b""
    try:
        async with stream:
            await stream.send((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            with anyio.fail_after(30):
                while not raw.endswith(b"\n"):
                    try:
                        raw += await stream.receive()
                    except anyio.EndOfStream:
                        break
    except (anyio.BrokenResourceError, OSError) as exc:
        # The daemon went away mid-request (it was stopping, or finished): asking again, or
        # `tablemover status`, answers from the checkpoint.
        raise MoveFailed(
            f"the daemon on {path} closed the connection before it answered {cmd!r} ({exc!r}); it may "
            "have been stopping. `tablemover status` shows where the move stands."
        ) from exc
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
