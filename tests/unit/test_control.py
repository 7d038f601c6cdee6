"""The control socket's request parsing: malformed, slow, oversized and hostile requests get an
answer (or a closed connection) and never take the daemon down."""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketListener, SocketStream
from hypothesis import given, settings
from hypothesis import strategies as st

from tablemover import control
from tablemover.control import ControlServer, request


async def ok(_request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "message": "fine"}


async def boom(_request: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("handler bug")


async def raw_exchange(path: str, payload: bytes, *, close_write: bool = True) -> bytes:
    stream = await anyio.connect_unix(path)
    async with stream:
        await stream.send(payload)
        if close_write:
            await stream.send_eof()
        out = b""
        with anyio.fail_after(10):
            while True:
                try:
                    out += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return out


@pytest.mark.parametrize(
    "payload",
    [
        b"not json\n",
        b"\xff\xfe\xfd invalid utf-8\n",
        b"[1, 2, 3]\n",
        b'"just a string"\n',
        b"null\n",
        b'{"cmd": ["status"]}\n',
        b"{" * 10_000 + b"\n",
        b"x" * (control.MAX_REQUEST + 10),  # oversized, no newline
        b"",  # connects and closes at once
    ],
)
async def test_bad_requests_get_an_answer_and_the_server_lives_on(tmp_path: Path, payload: bytes) -> None:
    path = str(tmp_path / "c.sock")
    server = ControlServer(path, {"status": ok, "boom": boom})
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        reply = await raw_exchange(path, payload)
        if reply:
            answer = json.loads(reply)
            assert answer["ok"] is False and "error" in answer
        # The server still answers a good request afterwards.
        assert (await request(path, "status"))["message"] == "fine"
        # A handler that raises answers with its error instead of ending the daemon.
        failed = await request(path, "boom")
        assert failed["ok"] is False and "handler bug" in failed["error"]
        assert (await request(path, "status"))["ok"] is True
        tg.cancel_scope.cancel()


async def test_slow_client_is_cut_off_and_others_are_served_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "c.sock")
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 0.5)
    server = ControlServer(path, {"status": ok})
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        slow = await anyio.connect_unix(path)
        await slow.send(b'{"cmd": "sta')  # and then nothing
        assert (await request(path, "status"))["ok"] is True  # not blocked by the slow one
        out = b""
        with anyio.fail_after(10):
            while True:
                try:
                    out += await slow.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
        assert json.loads(out)["ok"] is False
        await slow.aclose()
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------
# More of the same: every kind of bad request, slow and oversized ones, clients that leave, a
# handler whose reply cannot be sent, more clients than are served at once, failing accepts; after
# each the server answers a good request.


@asynccontextmanager
async def serving(path: str, handlers: dict[str, Any] | None = None) -> AsyncIterator[None]:
    server = ControlServer(path, handlers if handlers is not None else {"status": ok, "boom": boom})
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (bytes(b for b in range(256) if b != 10) + b"\n", "not UTF-8"),  # every byte value but \n
        (b"\x00" * 100 + b"\n", "not JSON"),
        ('{"cmd": "st\u00e4tus"}\n'.encode("latin-1"), "not UTF-8"),  # latin-1, not UTF-8
        (b"\xef\xbb\xbf" + b'{"cmd": "status"}\n', "not JSON"),  # a UTF-8 byte order mark
        (b"[" * 30_000 + b"]" * 30_000 + b"\n", "not JSON"),  # nested deeper than the parser goes
        (b'{"cmd": "status", "n": ' + b"9" * 5000 + b"}\n", "not JSON"),  # an integer too long
        (b"1e999999\n", "JSON object"),  # a number (infinity), not an object
        (b"true\n", "JSON object"),
        (b"{}\n", "unknown command None"),  # no command
        (b'{"cmd": null}\n', "unknown command None"),
        (b'{"cmd": 5}\n', "unknown command 5"),
        (b'{"cmd": "nope"}\n', "unknown command 'nope'"),
        (b'{"cmd": "STATUS"}\n', "unknown command 'STATUS'"),
        (b'{"cmd": "status"}' + b" " * control.MAX_REQUEST + b"\n", "longer than"),  # valid, too long
        (b"\n", "not JSON"),  # an empty line
        (b"", "closed before a request"),  # connects and closes its side at once
    ],
)
async def test_every_bad_request_is_answered_with_its_reason(
    tmp_path: Path, payload: bytes, error: str
) -> None:
    path = str(tmp_path / "c.sock")
    async with serving(path):
        answer = json.loads(await raw_exchange(path, payload))
        assert answer["ok"] is False and error in answer["error"], answer
        if "unknown command" in error:
            assert answer["commands"] == ["boom", "status"]
        assert (await request(path, "status"))["message"] == "fine"


async def test_odd_but_valid_requests_are_served(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    seen: list[dict[str, Any]] = []

    async def record(req: dict[str, Any]) -> dict[str, Any]:
        seen.append(req)
        return {"ok": True}

    async with serving(path, {"status": record, "boom": boom}):
        for payload in [
            b'{"cmd": "status", "n": 1e999999}\n',  # a float too large is infinity, not an error
            b'{"cmd": "status", "x": [[[[[[[[[[[]]]]]]]]]]]}\n',
            b'  {"cmd": "status"}  \r\n',  # whitespace and CRLF around the object
            b'{"cmd": "status"}',  # no newline: the end of the client's side ends the line
            b'{"cmd": "status"}\n{"cmd": "boom"}\n',  # one request per connection: the rest is ignored
            b'{"cmd": "status", "pad": "' + b"a" * (control.MAX_REQUEST - 40) + b'"}\n',  # near the limit
        ]:
            assert json.loads(await raw_exchange(path, payload))["ok"] is True, payload[:60]
        assert len(seen) == 6


async def test_a_request_followed_by_more_bytes_is_answered_at_once(tmp_path: Path) -> None:
    """The line ends at its newline, whatever follows and whether or not the client closes."""
    path = str(tmp_path / "c.sock")
    async with serving(path):
        with anyio.fail_after(2):  # far below REQUEST_TIMEOUT_S: not answered by the timeout
            reply = await raw_exchange(path, b'{"cmd": "status"}\n{"cmd": "boom"', close_write=False)
        assert json.loads(reply)["message"] == "fine"


async def test_trickling_client_is_cut_off_at_the_request_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris: a byte every 50 ms, never a newline. The bytes do not extend the deadline."""
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 1.0)
    path = str(tmp_path / "c.sock")
    async with serving(path):
        slow = await anyio.connect_unix(path)
        async with slow:

            async def trickle() -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    for byte in b'{"cmd": "status", "pad": "' + b"a" * 1000:
                        await slow.send(bytes([byte]))
                        await anyio.sleep(0.05)

            started = time.monotonic()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle)
                    assert (await request(path, "status"))["ok"] is True  # others are served meanwhile
                    answer = json.loads(await read_to_end(slow))
                    tg.cancel_scope.cancel()
            elapsed = time.monotonic() - started
        assert answer["ok"] is False and "no complete request line within 1 s" in answer["error"]
        assert 0.8 <= elapsed < 5
        assert (await request(path, "status"))["ok"] is True


async def test_slow_but_complete_request_is_served(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    async with serving(path), await anyio.connect_unix(path) as stream:
        line = b'{"cmd": "status", "why": "typed by hand"}\n'
        for i in range(0, len(line), 2):
            await stream.send(line[i : i + 2])
            await anyio.sleep(0.01)
        with anyio.fail_after(5):
            assert json.loads(await read_to_end(stream))["message"] == "fine"


async def test_clients_that_leave_midway(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    async with serving(path):
        # Connects and leaves without a byte, without half-closing first.
        for _ in range(3):
            stream = await anyio.connect_unix(path)
            await stream.aclose()
        # Half a request, then gone.
        stream = await anyio.connect_unix(path)
        await stream.send(b'{"cmd": "sta')
        await stream.aclose()
        # A whole request, then gone before the reply.
        stream = await anyio.connect_unix(path)
        await stream.send(b'{"cmd": "status"}\n')
        await stream.aclose()
        # The same from a plain socket, closed with unread data.
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.sendall(b'{"cmd": "status"}\n')
        sock.close()
        for _ in range(3):
            assert (await request(path, "status"))["message"] == "fine"


async def test_a_reply_that_cannot_be_encoded_is_an_error_not_a_dead_socket(tmp_path: Path) -> None:
    """A handler bug (a reply json cannot write) used to escape the handler and end the listener."""

    async def tuple_keys(_request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, (1, 2): "a key json cannot write"}  # type: ignore[dict-item]

    async def circular(_request: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"ok": True}
        reply["self"] = reply
        return reply

    path = str(tmp_path / "c.sock")
    async with serving(path, {"status": ok, "keys": tuple_keys, "loop": circular}):
        for cmd in ("keys", "loop"):
            answer = await request(path, cmd)
            assert answer["ok"] is False and "could not encode its reply" in answer["error"]
            assert (await request(path, "status"))["message"] == "fine"


async def test_at_the_connection_limit_new_clients_wait_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 0.5)
    monkeypatch.setattr(control, "MAX_CONNECTIONS", 2)
    path = str(tmp_path / "c.sock")
    async with serving(path):
        silent = [await anyio.connect_unix(path) for _ in range(4)]
        started = time.monotonic()
        assert (await request(path, "status"))["message"] == "fine"  # queued, then served
        assert time.monotonic() - started >= 0.4
        for stream in silent:
            assert json.loads(await read_to_end(stream))["ok"] is False
            await stream.aclose()


@SocketListener.register
class FlakyListener:
    """A real listener whose first accepts fail as they do when the process is out of descriptors."""

    def __init__(self, inner: SocketListener, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def accept(self) -> SocketStream:
        if self.failures:
            self.failures -= 1
            await anyio.sleep(0.01)
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.inner.accept()


async def test_serve_connections_outlives_failed_accepts_and_failing_handlers(tmp_path: Path) -> None:
    """anyio's Listener.serve ends on either (and with it the task group it runs in); ours goes on."""
    path = str(tmp_path / "c.sock")
    served: list[bytes] = []

    async def handler(stream: SocketStream) -> None:
        line = await stream.receive()
        if line == b"raise\n":
            raise RuntimeError("handler bug")
        served.append(line)
        await stream.send(b"done\n")
        await stream.aclose()

    async with await anyio.create_unix_listener(path) as inner:
        flaky = FlakyListener(inner, failures=3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: control.serve_connections(flaky, handler, limit=4, what="test"))
            for payload in (b"raise\n", b"one\n", b"raise\n", b"two\n"):
                async with await anyio.connect_unix(path) as stream:
                    await stream.send(payload)
                    with anyio.fail_after(5):
                        reply = await read_to_end(stream)
                    assert reply == (b"" if payload == b"raise\n" else b"done\n")
            assert flaky.failures == 0 and served == [b"one\n", b"two\n"]
            tg.cancel_scope.cancel()


async def read_to_end(stream: SocketStream) -> bytes:
    out = b""
    while True:
        try:
            out += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return out


@settings(max_examples=100, deadline=None)
@given(
    line=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children),
            max_leaves=20,
        ).map(lambda doc: json.dumps(doc).encode()),
        st.dictionaries(
            st.sampled_from(["cmd", "x", ""]), st.sampled_from(["status", "boom", "", 1, None])
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
)
async def test_any_request_line_gets_a_json_answer(line: bytes) -> None:
    """Whatever one line holds: a JSON object answer, ok only for a request that names a command,
    and the server answers the next good request."""
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "c.sock")
        async with serving(path):
            answer = json.loads(await raw_exchange(path, line.split(b"\n")[0] + b"\n"))
            assert isinstance(answer, dict) and isinstance(answer["ok"], bool)
            assert answer["ok"] is (answer.get("message") == "fine")
            if not answer["ok"]:
                assert isinstance(answer["error"], str) and answer["error"]
            assert (await request(path, "status"))["message"] == "fine"


async def test_a_daemon_that_goes_away_mid_request_is_exit_1_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tablemover.errors import MoveFailed

    class Vanishing:
        """A connection to a daemon that exits as the request arrives (EPIPE / reset)."""

        async def __aenter__(self) -> Vanishing:
            return self

        async def __aexit__(self, *_exc: object) -> None:
            return None

        async def send(self, _data: bytes) -> None:
            raise anyio.BrokenResourceError

    async def connect(_path: str) -> Vanishing:
        return Vanishing()

    monkeypatch.setattr(control.anyio, "connect_unix", connect)
    with pytest.raises(MoveFailed, match="closed the connection") as raised:
        await request("/run/tablemover/x.sock", "status")
    assert raised.value.exit_code == 1
