"""The HTTP status endpoint, over real loopback sockets: /metrics, /status, errors, slow clients."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tablemover import __version__, http
from tablemover.http import (
    MAX_HEADER_BYTES,
    STATES,
    MetricsSnapshot,
    StatusServer,
    applied_sequences,
    build_registry,
    parse_address,
)
from tablemover.machine import State


def snapshot(**changes: Any) -> MetricsSnapshot:
    base = MetricsSnapshot(
        move="orders",
        state="COPYING",
        rows_copied={"orders": 1500, "order_items": 40},
        rows_total={"orders": 3000, "order_items": 9000},
        events_applied=77,
        lag_seconds=0.25,
        throttled=False,
        throttle_reason="",
        chunk_size=1000,
        cutover_outage_ms=None,
        hook_runs={},
        applied_gtid="0-1-100,1-2-7",
    )
    return dataclasses.replace(base, **changes)


class Source:
    """A snapshot function that counts its calls and whose next value a test can set."""

    def __init__(self, snap: MetricsSnapshot) -> None:
        self.snap = snap
        self.calls = 0

    def __call__(self) -> MetricsSnapshot:
        self.calls += 1
        return self.snap


async def status_body() -> dict[str, Any]:
    return {
        "move": "orders",
        "state": "COPYING",
        "tables": {"orders": {"copied": 1500}},
        "at": datetime(2024, 5, 1, 12, 0),
    }


@asynccontextmanager
async def running(
    source: Callable[[], MetricsSnapshot], header_timeout: float | None = None
) -> AsyncIterator[tuple[StatusServer, int]]:
    server = StatusServer("127.0.0.1:0", source, status_body)
    if header_timeout is not None:
        server.header_timeout = header_timeout
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        yield server, port
        tg.cancel_scope.cancel()


async def fetch(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` raw, read to EOF (the server closes), split status, headers and body."""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            raw = b""
            while True:
                try:
                    raw += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, code, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) or request.startswith(b"HEAD")
    return int(code), headers, body


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await fetch(port, f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())


def families(body: bytes) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def values(family: Metric) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values keyed by their sorted labels."""
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_states_match_the_state_machine() -> None:
    assert tuple(s.value for s in State) == STATES


async def test_metrics_values_labels_and_content_type() -> None:
    source = Source(snapshot(hook_runs={"success": 1, "before-cutover": 2}))
    async with running(source) as (_, port):
        code, headers, body = await get(port, "/metrics")
    assert code == 200
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    fams = families(body)

    assert fams["tablemover_rows_copied"].type == "gauge"
    assert values(fams["tablemover_rows_copied"]) == {
        (("move", "orders"), ("table", "order_items")): 40,
        (("move", "orders"), ("table", "orders")): 1500,
    }
    assert values(fams["tablemover_rows_total"]) == {
        (("move", "orders"), ("table", "order_items")): 9000,
        (("move", "orders"), ("table", "orders")): 3000,
    }
    # The text parser names counter families without "_total"; the sample keeps it.
    events = fams["tablemover_events_applied"]
    assert events.type == "counter"
    assert [(s.name, s.labels, s.value) for s in events.samples] == [
        ("tablemover_events_applied_total", {"move": "orders"}, 77)
    ]
    assert values(fams["tablemover_apply_lag_seconds"]) == {(("move", "orders"),): 0.25}
    assert values(fams["tablemover_chunk_size"]) == {(("move", "orders"),): 1000}
    assert values(fams["tablemover_throttled"]) == {(("move", "orders"), ("reason", "")): 0}
    hooks = fams["tablemover_hook_runs"]
    assert hooks.type == "counter"
    assert {s.name for s in hooks.samples} == {"tablemover_hook_runs_total"}
    assert values(hooks) == {
        (("hook", "before-cutover"), ("move", "orders")): 2,
        (("hook", "success"), ("move", "orders")): 1,
    }
    assert values(fams["tablemover_info"]) == {(("move", "orders"), ("version", __version__)): 1}
    assert values(fams["tablemover_applied_gtid_sequence"]) == {
        (("move", "orders"), ("stream", "0")): 100,
        (("move", "orders"), ("stream", "1")): 7,
    }
    # Not measured yet: absent, not 0 (which would read as a perfect cutover).
    assert "tablemover_cutover_outage_milliseconds" not in fams

    state = fams["tablemover_state"]
    assert state.type == "gauge"
    assert [s.labels["state"] for s in state.samples] == list(STATES)
    assert all(s.labels["move"] == "orders" for s in state.samples)
    assert [s.labels["state"] for s in state.samples if s.value == 1] == ["COPYING"]
    assert sum(s.value for s in state.samples) == 1
    assert source.calls == 1


async def test_snapshot_is_taken_per_scrape() -> None:
    source = Source(snapshot())
    async with running(source) as (_, port):
        assert source.calls == 0  # registering the collector takes no snapshot
        first = families((await get(port, "/metrics"))[2])
        source.snap = snapshot(
            state="DONE",
            rows_copied={"orders": 3000, "order_items": 9000},
            events_applied=500,
            lag_seconds=0.0,
            throttled=True,
            throttle_reason="threads_running",
            chunk_size=250,
            cutover_outage_ms=42.5,
            hook_runs={"success": 1},
            applied_gtid="0-1-900",
        )
        second = families((await get(port, "/metrics"))[2])
    assert source.calls == 2

    assert values(first["tablemover_events_applied"]) == {(("move", "orders"),): 77}
    assert values(second["tablemover_events_applied"]) == {(("move", "orders"),): 500}
    assert values(second["tablemover_rows_copied"])[(("move", "orders"), ("table", "orders"))] == 3000
    assert [s.labels["state"] for s in second["tablemover_state"].samples if s.value == 1] == ["DONE"]
    assert sum(s.value for s in second["tablemover_state"].samples) == 1
    assert values(second["tablemover_throttled"]) == {(("move", "orders"), ("reason", "threads_running")): 1}
    assert values(second["tablemover_chunk_size"]) == {(("move", "orders"),): 250}
    assert values(second["tablemover_cutover_outage_milliseconds"]) == {(("move", "orders"),): 42.5}
    assert values(second["tablemover_hook_runs"]) == {(("hook", "success"), ("move", "orders")): 1}
    assert values(second["tablemover_applied_gtid_sequence"]) == {(("move", "orders"), ("stream", "0")): 900}
    # The series stays the same while the position moves: nothing position-like is a label.
    assert values(second["tablemover_info"]) == values(first["tablemover_info"])


def test_registry_is_private_and_live() -> None:
    source = Source(snapshot())
    one, two = build_registry(source), build_registry(Source(snapshot(move="other")))
    assert one is not two  # two servers in one process never share or clash
    text = generate_latest(one).decode()
    assert 'move="orders"' in text and 'move="other"' not in text
    assert "process_" not in text and "python_gc" not in text  # no default collectors
    source.snap = snapshot(events_applied=78)
    assert 'tablemover_events_applied_total{move="orders"} 78.0' in generate_latest(one).decode()


def test_unknown_state_is_still_shown() -> None:
    fams = families(generate_latest(build_registry(lambda: snapshot(state="SOMETHING_NEW"))))
    ones = [s.labels["state"] for s in fams["tablemover_state"].samples if s.value == 1]
    assert ones == ["SOMETHING_NEW"]


def test_applied_sequences_of_both_flavours() -> None:
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert applied_sequences("0-1-100,1-2-7") == {"0": 100, "1": 7}
    assert applied_sequences(f"{u}:1-5:7-9,\n{u}:tag:1-3") == {u: 9, f"{u}:tag": 3}
    assert applied_sequences("") == {}
    assert applied_sequences('garbage,"odd"\\') == {}


async def test_status_is_json() -> None:
    async with running(Source(snapshot())) as (_, port):
        code, headers, body = await get(port, "/status?verbose=1")
    assert code == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["move"] == "orders" and doc["tables"] == {"orders": {"copied": 1500}}
    assert doc["at"] == "2024-05-01 12:00:00"  # non-JSON values are stringified, not a 500


async def test_stuck_status_is_a_503() -> None:
    async def stuck() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    server = StatusServer("127.0.0.1:0", Source(snapshot()), stuck)
    server.status_timeout = 0.2
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        assert (await get(port, "/status"))[0] == 503
        assert (await get(port, "/metrics"))[0] == 200  # metrics never wait for the status call
        tg.cancel_scope.cancel()


async def test_not_found_method_and_head() -> None:
    source = Source(snapshot())
    async with running(source) as (_, port):
        code, headers, body = await get(port, "/nope")
        assert code == 404 and headers["content-type"].startswith("text/plain")
        assert (await get(port, "/"))[0] == 404
        code, headers, _ = await fetch(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert code == 405 and headers["allow"] == "GET, HEAD"
        code, headers, body = await fetch(port, b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert code == 200 and body == b"" and int(headers["content-length"]) > 0
        assert headers["content-type"] == CONTENT_TYPE_LATEST
        code, _, body = await fetch(port, b"GET /metrics HTTP/1.1\n\n")  # bare LF, as typed into nc
        assert code == 200 and b"tablemover_state" in body


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"\xff\xfe GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics SPDY/3\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000, 431),  # never ends its headers
    ],
)
async def test_garbage_is_refused(request_bytes: bytes, code: int) -> None:
    async with running(Source(snapshot())) as (_, port):
        assert (await fetch(port, request_bytes))[0] == code
        assert (await get(port, "/metrics"))[0] == 200  # and the server goes on serving


async def test_slow_client_does_not_hang_the_server() -> None:
    source = Source(snapshot())
    async with running(source, header_timeout=1.0) as (_, port):
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", port) as silent:
                await silent.send(b"GET /metrics HTTP/1.1\r\nHost: ")  # and then nothing
                # Others are served while the silent client holds its connection.
                started = time.monotonic()
                assert (await get(port, "/metrics"))[0] == 200
                assert time.monotonic() - started < 0.9
                # The silent client is answered 408 and disconnected after the header timeout.
                raw = b""
                while True:
                    try:
                        raw += await silent.receive()
                    except anyio.EndOfStream:
                        break
                assert raw.startswith(b"HTTP/1.1 408 ")
                assert time.monotonic() - started >= 0.8


async def test_client_that_connects_and_leaves() -> None:
    async with running(Source(snapshot())) as (_, port):
        for _ in range(3):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.aclose()
        assert (await get(port, "/metrics"))[0] == 200


async def test_failing_snapshot_is_a_500_not_a_dead_server() -> None:
    broken = True

    def flaky() -> MetricsSnapshot:
        if broken:
            raise RuntimeError("state not ready")
        return snapshot()

    async with running(flaky) as (_, port):
        assert (await get(port, "/metrics"))[0] == 500
        broken = False
        assert (await get(port, "/metrics"))[0] == 200


async def test_cancellation_closes_the_port() -> None:
    async with running(Source(snapshot())) as (_, port):
        pass
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:9100", ("localhost", 9100)),
        (":9100", (None, 9100)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_parse_address(address: str, parsed: tuple[str | None, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["", "localhost", "host:port", "host:70000", "host:-1"])
def test_bad_address_fails_at_construction(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        StatusServer(address, lambda: snapshot(), status_body)


# ---------------------------------------------------------------------------------------------
# What the endpoint parses is exposed on a port: malformed, slow, oversized and random requests,
# and clients that leave, each followed by a good request that must still be served.


async def read_all(stream: anyio.abc.SocketStream) -> bytes:
    raw = b""
    while True:
        try:
            raw += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return raw


def head_of(size: int) -> bytes:
    """A well-formed GET /metrics whose head (request line, headers, empty line) is ``size`` bytes."""
    start = b"GET /metrics HTTP/1.1\r\nX: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        # A request line longer than the whole head may be.
        (b"GET /metrics?" + b"q" * MAX_HEADER_BYTES + b" HTTP/1.1\r\n\r\n", 431),
        # Headers that do end, but past the limit: one huge header, or very many small ones.
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n", 431),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEADER_BYTES // 8) + b"\r\n", 431),
        # The whole head one byte over the limit, and exactly at it.
        (head_of(MAX_HEADER_BYTES + 1), 431),
        (head_of(MAX_HEADER_BYTES), 200),
        # Oversized with a body behind it: the body is never read (and drained, not reset).
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"z" * 100_000, 405),
    ],
)
async def test_oversized_requests_are_refused(request_bytes: bytes, code: int) -> None:
    async with running(Source(snapshot())) as (_, port):
        assert (await fetch(port, request_bytes))[0] == code
        assert (await get(port, "/metrics"))[0] == 200


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"\x00" * 64 + b"\r\n\r\n", 400),  # NUL bytes
        (bytes(range(256)) + b"\r\n\r\n", 400),  # every byte value
        (b"GET /metrics\r\n\r\n", 400),  # HTTP/0.9 style, no version
        (b"GET /met rics HTTP/1.1\r\n\r\n", 400),  # a space in the target
        (b"\r\n\r\n", 400),  # an empty request line
        (b" GET /metrics HTTP/1.1\r\n\r\n", 400),  # leading space
        (b"GET /metrics HTTP/1.1 \r\n\r\n", 400),  # trailing space
        ("GET /métrics HTTP/1.1\r\n\r\n".encode(), 400),  # non-ASCII UTF-8 in the target
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),  # TLS hello
        (b"GET /metrics HTTP/1.1\x00\r\n\r\n", 505),  # a NUL in the version: not a version we speak
        (b"GET /metrics HTTP/1.1\n\r\n", 200),  # mixed line ends still end the head
    ],
)
async def test_binary_and_malformed_request_lines(request_bytes: bytes, code: int) -> None:
    async with running(Source(snapshot())) as (_, port):
        assert (await fetch(port, request_bytes))[0] == code
        assert (await get(port, "/metrics"))[0] == 200


async def test_trickling_client_is_cut_off_at_the_header_timeout() -> None:
    """Slowloris: a byte every 50 ms, never ending the head. Each byte does not extend the deadline."""
    async with running(Source(snapshot()), header_timeout=1.0) as (_, port):
        answer: list[bytes] = []
        async with await anyio.connect_tcp("127.0.0.1", port) as slow:

            async def trickle() -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                        await slow.send(bytes([byte]))
                        await anyio.sleep(0.05)

            started = time.monotonic()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(trickle)
                    # Others are served while the slow client trickles.
                    assert (await get(port, "/metrics"))[0] == 200
                    answer.append(await read_all(slow))
                    tg.cancel_scope.cancel()
            elapsed = time.monotonic() - started
        assert answer[0].startswith(b"HTTP/1.1 408 ")
        assert 0.8 <= elapsed < 5  # cut off at the timeout, though bytes kept coming
        assert (await get(port, "/metrics"))[0] == 200


async def test_slow_but_complete_request_is_served() -> None:
    """A request in many small pieces, all within the header timeout, is assembled and answered."""
    async with running(Source(snapshot()), header_timeout=5.0) as (_, port):
        request = b"GET /status HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                for i in range(0, len(request), 3):
                    await stream.send(request[i : i + 3])
                    await anyio.sleep(0.01)
                raw = await read_all(stream)
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["move"] == "orders"


async def test_clients_that_leave_midway() -> None:
    async with running(Source(snapshot())) as (_, port):
        # Half a request line, then gone.
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /metr")
        await stream.aclose()
        # A whole request, then gone before the answer is read.
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /metrics HTTP/1.1\r\n\r\n")
        await stream.aclose()
        # Half a request, then a reset (RST) instead of a close.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /status HTTP/1.1\r\nHo")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        # Half-closed after half a request: the server sees the end and has nobody to answer.
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /metrics HTT")
        await stream.send_eof()
        with anyio.fail_after(5):
            assert await read_all(stream) == b""
        await stream.aclose()
        for _ in range(3):
            assert (await get(port, "/metrics"))[0] == 200


async def test_at_the_connection_limit_new_clients_wait_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "LINGER_S", 0.1)
    server = StatusServer("127.0.0.1:0", Source(snapshot()), status_body)
    server.header_timeout = 0.5
    server.max_connections = 3
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        silent = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(5)]
        for stream in silent:
            await stream.send(b"GET /metrics HTTP/1.1\r\n")  # and then nothing
        started = time.monotonic()
        # Queued behind the silent ones (in the kernel's backlog), then served.
        assert (await get(port, "/metrics"))[0] == 200
        assert time.monotonic() - started >= 0.4
        for stream in silent:
            assert (await read_all(stream)).startswith(b"HTTP/1.1 408 ")
            await stream.aclose()
        tg.cancel_scope.cancel()


FLOOD_SERVER = """
import resource, sys, anyio
from tablemover.http import MetricsSnapshot, StatusServer

def snap():
    return MetricsSnapshot("m", "COPYING", {}, {}, 0, 0.0, False, "", 1000, None, {}, "")

async def status():
    return {"move": "m"}

async def main():
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    async with anyio.create_task_group() as tg:
        print(await tg.start(StatusServer("127.0.0.1:0", snap, status).serve), flush=True)

anyio.run(main)
"""


def test_a_flood_past_the_descriptor_limit_does_not_end_the_server() -> None:
    """More connections than the process may open files: accept() fails with EMFILE. anyio's own
    Listener.serve ends on that (and with it the daemon's task group); ours waits and goes on."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOD_SERVER, "32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
        time.sleep(1.0)  # the server accepts until it runs out of descriptors
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        for sock in flood:
            sock.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ") and b"tablemover_state" in reply
        assert proc.poll() is None
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "accepting a connection failed" in err  # it did hit the limit


_METHODS = ["GET", "HEAD", "POST", "get", "", "G\x00T", "OPTIONS", "GET\t"]
_TARGETS = ["/status", "/metrics", "/metrics?x=1", "/status?", "/", "*", "http://h/metrics", "", "/statu"]
_VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/", "http/1.1", "", "HTTP/1.1 x", "HTTP/1.10"]
_VALID = re.compile(rb"(GET|HEAD) /(status|metrics)(\?[\x00-\x1f\x21-\x7f]*)? HTTP/1\.[01]")

request_lines = st.one_of(
    st.binary(max_size=120),
    st.builds(
        lambda m, s1, t, s2, v: f"{m}{s1}{t}{s2}{v}".encode("latin-1"),
        st.sampled_from(_METHODS),
        st.sampled_from([" ", "", "  ", "\t"]),
        st.sampled_from(_TARGETS),
        st.sampled_from([" ", "", "  "]),
        st.sampled_from(_VERSIONS),
    ),
)


@settings(max_examples=100, deadline=None)
@given(line=request_lines, headers=st.binary(max_size=80))
async def test_any_request_gets_one_well_formed_answer(line: bytes, headers: bytes) -> None:
    """Whatever the request line and header bytes: one HTTP/1.1 answer with a status we expect,
    200 only for a well-formed GET or HEAD of /status or /metrics, and the server lives on."""
    request = line + b"\r\n" + headers + b"\r\n\r\n"
    first = request.split(b"\n", 1)[0].rstrip(b"\r")
    async with running(Source(snapshot())) as (_, port):
        code, _headers, _body = await fetch(port, request)
        assert code in (200, 400, 404, 405, 505)
        assert (code == 200) == bool(_VALID.fullmatch(first))
        assert (await get(port, "/metrics"))[0] == 200


@pytest.mark.parametrize(
    ("host", "code"),
    [
        (b"localhost", 200),
        (b"localhost:9180", 200),
        (b"127.0.0.1:9180", 200),
        (b"[::1]:9180", 200),
        (b"10.1.2.3", 200),  # an IP literal cannot be rebound to another server
        (b"evil.example", 421),  # DNS rebinding: a name that resolves to us today
        (b"evil.example:9180", 421),
        (b"localhost.evil.example", 421),
    ],
)
async def test_a_host_header_naming_another_server_is_refused(host: bytes, code: int) -> None:
    async with running(Source(snapshot())) as (_, port):
        status, _, body = await fetch(port, b"GET /status HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert status == code, body
        # HTTP/1.0 without a Host header is still served.
        assert (await fetch(port, b"GET /status HTTP/1.0\r\n\r\n"))[0] == 200


async def test_one_client_cannot_hold_every_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "LINGER_S", 0.1)
    server = StatusServer("127.0.0.1:0", Source(snapshot()), status_body)
    server.header_timeout = 30
    server.max_per_client = 2
    server.per_client_exempt = lambda _peer: False  # loopback is exempt in production
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        held = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
        for stream in held:
            await stream.send(b"GET /metrics HTTP/1.1\r\n")  # and then nothing: a slowloris
        with anyio.fail_after(10):
            extra = await anyio.connect_tcp("127.0.0.1", port)
            assert await read_all(extra) == b"", "a third connection of the same client is closed unanswered"
            await extra.aclose()
            # Another client is served at once, not after the held connections time out.
            async with await anyio.connect_tcp("127.0.0.1", port, local_host="127.0.0.2") as other:
                await other.send(b"GET /metrics HTTP/1.0\r\n\r\n")
                assert (await read_all(other)).startswith(b"HTTP/1.1 200 ")
        for stream in held:
            await stream.aclose()
        tg.cancel_scope.cancel()


async def test_listening_beyond_loopback_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    server = StatusServer("0.0.0.0:0", Source(snapshot()), status_body)
    with caplog.at_level(logging.WARNING):
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            tg.cancel_scope.cancel()
    assert any("not only loopback" in r.getMessage() for r in caplog.records), caplog.text
