"""The control socket's request parsing: malformed, slow, oversized and hostile requests get an
answer (or a closed connection) and never take the daemon down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

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
