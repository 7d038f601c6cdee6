"""The HTTP status endpoint: ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text format).

A deliberately tiny HTTP/1.1 server on an anyio TCP listener, one request per connection
(``Connection: close``). Of a request it reads only the request line: headers are bounded in size
and time and skipped, a body is never read, so there is no header or body parsing to get wrong (no
keep-alive, no chunked encoding, no request smuggling). ``tests/unit/test_http.py`` feeds it
malformed, slow (trickled), oversized and random requests; docs/http-decision.md says why this is
not a library. It runs in the daemon's own event loop rather than in prometheus_client's
server threads, so a scrape reads the move's in-memory state without locks and is cancelled with
the rest of the daemon. The exposition format itself comes from prometheus_client.

Metrics are produced by a collector over a :class:`MetricsSnapshot` taken once per scrape, so every
scrape is current and internally consistent; nothing has to be kept in sync with the move's state.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute, SocketStream
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from tablemover import __version__
from tablemover.control import serve_connections
from tablemover.log import event

STATES = (
    "PREPARED",
    "COPYING",
    "CUTOVER_STARTED",
    "RENAMED",
    "DRAINED",
    "HOOK_FIRED",
    "DONE",
    "WINDOW_OPEN",
    "ROLLBACK_STARTED",
    "ROLLBACK_RENAMED",
    "ROLLBACK_DRAINED",
    "ROLLED_BACK",
    "ABORTED",
    "FAILED",
)
"""Every state a move can be in, in the order a move passes through them (``tablemover_state``)."""

MAX_HEADER_BYTES = 8 * 1024
"""Request line plus headers; anything longer is refused (431) instead of buffered."""

HEADER_TIMEOUT_S = 5.0
"""How long a client may take to send its request line and headers."""

SEND_TIMEOUT_S = 10.0
"""How long a client may take to accept the response (a reader that never reads must not pin a task)."""

MAX_CONNECTIONS = 64
"""Connections served at once; more wait in the kernel's backlog (a flood cannot use up descriptors)."""

MAX_PER_CLIENT = 8
"""Connections one client address may hold at once; past that a new one is closed unanswered, so one
client cannot take every slot of ``MAX_CONNECTIONS`` (a slowloris). Loopback clients are exempt:
they are local processes, which can do worse than that, and the tests' floods come from there."""

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host header names always accepted (besides the address the server is bound to)."""

LINGER_S = 2.0
"""How long to drain a client's leftover input after replying, before closing (see ``_handle``)."""

STATUS_TIMEOUT_S = 10.0
"""How long the ``status`` callable may take before /status answers 503."""

JSON_CONTENT_TYPE = "application/json"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    421: "Misdirected Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass
class MetricsSnapshot:
    """The values one scrape exposes, read from the running move at scrape time."""

    move: str
    state: str  # one of STATES
    rows_copied: dict[str, int]  # per table
    rows_total: dict[str, int]  # per table (estimates)
    events_applied: int
    lag_seconds: float
    throttled: bool
    throttle_reason: str  # "" when not throttled
    chunk_size: int
    cutover_outage_ms: float | None  # None until a cutover has measured it
    hook_runs: dict[str, int]  # per hook name, e.g. {"success": 1}
    applied_gtid: str
    cutover_lock_wait_ms: float | None = None  # the part of the outage the RENAME waited for locks
    reverse_lag_seconds: float | None = None  # the rollback window's reverse feed; None while closed
    rollback_outage_ms: float | None = None  # None until a rollback has measured it
    # 1 encrypted / 0 plain, per (server role, connection), e.g. ("source", "binlog"); see tls.py.
    tls_encrypted: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Per watched target replica ("host:port"): heartbeat lag (None = cannot be read), and whether
    # it holds the copy (tablemover.replicas).
    replica_lag_seconds: dict[str, float | None] = field(default_factory=dict)
    replica_holds_copy: dict[str, bool] = field(default_factory=dict)
    # The same per watched source replica, read during the rollback window: whether it holds the
    # reverse writes into the source.
    source_replica_lag_seconds: dict[str, float | None] = field(default_factory=dict)
    source_replica_holds_writes: dict[str, bool] = field(default_factory=dict)


class _MoveCollector:
    """Builds the metric families from a fresh snapshot on every ``collect()``."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry know our names without taking a snapshot."""
        return iter(_families(None))

    def collect(self) -> Iterator[Metric]:
        """One snapshot per scrape, so all families in one scrape agree with each other."""
        return iter(_families(self._snapshot()))


def _families(snap: MetricsSnapshot | None) -> list[Metric]:
    """The metric families filled from ``snap``, or empty (names and types only) when it is None."""
    move = ["move"]
    rows_copied = GaugeMetricFamily(
        "tablemover_rows_copied",
        "Rows copied to the target by the chunk copier, per table.",
        labels=[*move, "table"],
    )
    rows_total = GaugeMetricFamily(
        "tablemover_rows_total",
        "Estimated rows of each moved table on the source (from table statistics).",
        labels=[*move, "table"],
    )
    events = CounterMetricFamily(
        "tablemover_events_applied_total", "Binlog row events applied to the target.", labels=move
    )
    lag = GaugeMetricFamily(
        "tablemover_apply_lag_seconds",
        "Seconds between a source commit and its application on the target.",
        labels=move,
    )
    state = GaugeMetricFamily(
        "tablemover_state",
        "The move's state: 1 for the current state, 0 for every other one.",
        labels=[*move, "state"],
    )
    throttled = GaugeMetricFamily(
        "tablemover_throttled",
        "1 while copying is throttled, with the reason; else 0.",
        labels=[*move, "reason"],
    )
    chunk = GaugeMetricFamily("tablemover_chunk_size", "Rows per copy chunk.", labels=move)
    outage = GaugeMetricFamily(
        "tablemover_cutover_outage_milliseconds",
        "Write outage of the cutover on the moved tables: from the RENAME to the on-success hook.",
        labels=move,
    )
    lock_wait = GaugeMetricFamily(
        "tablemover_cutover_lock_wait_milliseconds",
        "The part of the cutover outage the RENAME spent waiting for metadata locks.",
        labels=move,
    )
    reverse_lag = GaugeMetricFamily(
        "tablemover_reverse_lag_seconds",
        "Rollback window: seconds a target commit waits to reach the source's renamed tables.",
        labels=move,
    )
    rollback_outage = GaugeMetricFamily(
        "tablemover_rollback_outage_milliseconds",
        "Write outage of a rollback: from the target RENAME to the on-rollback hook.",
        labels=move,
    )
    hooks = CounterMetricFamily(
        "tablemover_hook_runs_total", "Hook executions, per hook name.", labels=[*move, "hook"]
    )
    # InfoMetricFamily appends "_info": this becomes tablemover_info. The applied GTID is NOT a
    # label (a new value per scrape would make a new series each time): it is a gauge per stream.
    info = InfoMetricFamily("tablemover", "The tablemover version running the move.", labels=move)
    tls_encrypted = GaugeMetricFamily(
        "tablemover_tls_encrypted",
        "1 when the connection of this role to this server is encrypted (TLS), 0 when it is plain.",
        labels=[*move, "server", "connection"],
    )
    replica_lag = GaugeMetricFamily(
        "tablemover_replica_lag_seconds",
        "Heartbeat lag of a watched target replica (absent while it cannot be read).",
        labels=[*move, "replica"],
    )
    replica_holds = GaugeMetricFamily(
        "tablemover_replica_holds_copy",
        "1 while this watched target replica holds the copy (over max_replica_lag_s or unreadable).",
        labels=[*move, "replica"],
    )
    source_replica_lag = GaugeMetricFamily(
        "tablemover_source_replica_lag_seconds",
        "Heartbeat lag of a watched source replica in the rollback window (absent while it cannot be read).",
        labels=[*move, "replica"],
    )
    source_replica_holds = GaugeMetricFamily(
        "tablemover_source_replica_holds_writes",
        "1 while this watched source replica holds the reverse writes (over the limit or unreadable).",
        labels=[*move, "replica"],
    )
    applied = GaugeMetricFamily(
        "tablemover_applied_gtid_sequence",
        "Newest applied source transaction: seq per MariaDB domain, or highest GTID number per MySQL source.",
        labels=[*move, "stream"],
    )

    if snap is not None:
        m = snap.move
        for table, n in sorted(snap.rows_copied.items()):
            rows_copied.add_metric([m, table], n)
        for table, n in sorted(snap.rows_total.items()):
            rows_total.add_metric([m, table], n)
        events.add_metric([m], snap.events_applied)
        lag.add_metric([m], snap.lag_seconds)
        for name in STATES:
            state.add_metric([m, name], 1.0 if snap.state == name else 0.0)
        if snap.state not in STATES:
            # A state this module does not know yet is still shown, not silently reported as none.
            state.add_metric([m, snap.state], 1.0)
        throttled.add_metric(
            [m, snap.throttle_reason if snap.throttled else ""], 1.0 if snap.throttled else 0.0
        )
        chunk.add_metric([m], snap.chunk_size)
        if snap.cutover_outage_ms is not None:
            # Absent rather than 0 before a cutover: 0 ms would read as a perfect cutover.
            outage.add_metric([m], snap.cutover_outage_ms)
            lock_wait.add_metric([m], snap.cutover_lock_wait_ms or 0.0)
        if snap.reverse_lag_seconds is not None:
            reverse_lag.add_metric([m], snap.reverse_lag_seconds)
        if snap.rollback_outage_ms is not None:
            rollback_outage.add_metric([m], snap.rollback_outage_ms)
        for hook, n in sorted(snap.hook_runs.items()):
            hooks.add_metric([m, hook], n)
        info.add_metric([m], {"version": __version__})
        for stream, seq in applied_sequences(snap.applied_gtid).items():
            applied.add_metric([m, stream], seq)
        for (server, connection), encrypted in sorted(snap.tls_encrypted.items()):
            tls_encrypted.add_metric([m, server, connection], 1.0 if encrypted else 0.0)
        for replica, seconds in sorted(snap.replica_lag_seconds.items()):
            if seconds is not None:
                replica_lag.add_metric([m, replica], seconds)
        for replica, holds in sorted(snap.replica_holds_copy.items()):
            replica_holds.add_metric([m, replica], 1.0 if holds else 0.0)
        for replica, seconds in sorted(snap.source_replica_lag_seconds.items()):
            if seconds is not None:
                source_replica_lag.add_metric([m, replica], seconds)
        for replica, holds in sorted(snap.source_replica_holds_writes.items()):
            source_replica_holds.add_metric([m, replica], 1.0 if holds else 0.0)

    families: list[Metric] = [rows_copied, rows_total, events, lag, state, throttled, chunk]
    if snap is None or snap.cutover_outage_ms is not None:
        families += [outage, lock_wait]
    if snap is None or snap.reverse_lag_seconds is not None:
        families.append(reverse_lag)
    if snap is None or snap.rollback_outage_ms is not None:
        families.append(rollback_outage)
    if snap is None or snap.replica_holds_copy:
        families += [replica_lag, replica_holds]
    if snap is None or snap.source_replica_holds_writes:
        families += [source_replica_lag, source_replica_holds]
    families += [hooks, applied, tls_encrypted, info]
    return families


def applied_sequences(position: str) -> dict[str, int]:
    """{stream: newest number} of a GTID position: MariaDB "d-s-n" per domain "d", MySQL
    "uuid[:tag]:a-b" per "uuid[:tag]" (its highest number); what cannot be read is left out."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in position.replace("\n", "").split(","))):
        if ":" in part:
            uuid, *tokens = part.split(":")
            stream = uuid
            for token in tokens:  # intervals "1-5", or a tag that names the stream of those after it
                end = token.rpartition("-")[2]
                if end.isdigit():
                    out[stream] = max(out.get(stream, 0), int(end))
                elif token:
                    stream = f"{uuid}:{token}"
        else:
            pieces = part.split("-")
            if len(pieces) == 3 and all(p.isdigit() for p in pieces):
                out[pieces[0]] = max(out.get(pieces[0], 0), int(pieces[2]))
    return out


def build_registry(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A new registry (never prometheus_client's global one) whose only collector reads ``snapshot``.

    ``snapshot`` is called once per scrape, in the caller of ``generate_latest``; the registry holds
    no values of its own. It has no process or platform collectors, so two servers in one process
    (tests) never clash.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MoveCollector(snapshot))
    return registry


def parse_address(address: str) -> tuple[str | None, int]:
    """Split ``"host:port"`` (``"[::1]:port"`` for IPv6; empty host = every interface)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'HTTP address {address!r} is not "host:port" with a port from 0 to 65535')
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port_text)


class _BadRequest(Exception):
    """The request cannot be answered; carries the status to reply with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StatusServer:
    """Serves ``/status`` and ``/metrics`` over HTTP until its task is cancelled.

    ``snapshot`` feeds ``/metrics`` (called once per scrape); ``status`` produces the ``/status``
    JSON body (for instance the dictionary the control socket's ``status`` command returns).
    """

    def __init__(
        self,
        address: str,
        snapshot: Callable[[], MetricsSnapshot],
        status: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        # Parsed here so a bad address fails at start-up, not when the server task runs.
        self.host, self.port = parse_address(address)
        self.address = address
        self.registry = build_registry(snapshot)
        self.status = status
        # Instance attributes so tests can shorten them; operators have no reason to.
        self.header_timeout = HEADER_TIMEOUT_S
        self.send_timeout = SEND_TIMEOUT_S
        self.status_timeout = STATUS_TIMEOUT_S
        self.max_connections = MAX_CONNECTIONS
        self.max_per_client = MAX_PER_CLIENT
        self.per_client_exempt = is_loopback
        self._per_client: dict[str, int] = {}

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound port through ``task_status.started(port)``, serve until cancelled."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            port = int(listener.extra(SocketAttribute.local_port))
            event("http status listening", address=f"{self.host or '*'}:{port}")
            if not (self.host and is_loopback(self.host)):
                event(
                    f"http status listening on {self.host or 'every interface'}, not only loopback: "
                    "/status and /metrics have no authentication, so whoever reaches this port reads "
                    "the move's state. Bind it to 127.0.0.1 (or keep it behind a firewall).",
                    logging.WARNING,
                )
            task_status.started(port)
            await serve_connections(listener, self._handle, limit=self.max_connections, what="http status")

    async def _handle(self, stream: SocketStream) -> None:
        peer = _peer(stream)
        if not self.per_client_exempt(peer) and self._per_client.get(peer, 0) >= self.max_per_client:
            await anyio.aclose_forcefully(stream)
            return
        self._per_client[peer] = self._per_client.get(peer, 0) + 1
        try:
            await self._serve_one(stream)
        finally:
            self._per_client[peer] -= 1
            if not self._per_client[peer]:
                del self._per_client[peer]

    async def _serve_one(self, stream: SocketStream) -> None:
        # Every failure is answered (500) or swallowed here; serve_connections would only log an
        # escaped exception and close the connection without an answer.
        async with stream:
            try:
                reply = await self._respond(stream)
            except Exception as exc:
                event("http request failed", level=logging.WARNING, error=repr(exc))
                reply = 500, {"Content-Type": "text/plain; charset=utf-8"}, b"internal error\n"
            if reply is None:  # the client went away before sending a request: nobody to answer
                return
            status, headers, body = reply
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
            headers.setdefault("Content-Length", str(len(body)))
            headers["Connection"] = "close"
            head += [f"{k}: {v}" for k, v in headers.items()]
            payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
            payload += body
            with (
                anyio.move_on_after(self.send_timeout),
                contextlib.suppress(
                    anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
                ),
            ):
                await stream.send(payload)
                # Lingering close: closing with unread input (an over-long head, a request body)
                # makes the kernel send a reset, which can destroy the reply before the client
                # reads it. Half-close, then drain what the client still sends, briefly.
                await stream.send_eof()
                with anyio.move_on_after(LINGER_S):
                    while True:
                        await stream.receive()

    async def _respond(self, stream: SocketStream) -> tuple[int, dict[str, str], bytes] | None:
        """Read one request and build the response (status, headers, body); None = no one to answer."""
        text = {"Content-Type": "text/plain; charset=utf-8"}
        try:
            raw = await self._read_head(stream)
        except _BadRequest as exc:
            return exc.status, dict(text), f"{exc}\n".encode()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return None
        try:
            method, path = _request_line(raw)
        except _BadRequest as exc:
            return exc.status, dict(text), f"{exc}\n".encode()
        host = _host_header(raw)
        if host is not None and not self._host_allowed(host):
            # DNS rebinding: a page in a browser on this host, served from a name the attacker
            # controls that now resolves to 127.0.0.1, could read /status from the inside.
            return 421, dict(text), b"misdirected request: the Host header names another server\n"
        if path not in ("/status", "/metrics"):
            return 404, dict(text), b"not found: try /status or /metrics\n"
        if method not in ("GET", "HEAD"):
            return 405, {**text, "Allow": "GET, HEAD"}, b"method not allowed\n"
        if path == "/metrics":
            body = generate_latest(self.registry)
            headers = {"Content-Type": CONTENT_TYPE_LATEST}
        else:
            # Bounded: a status call stuck on a database must not hold the connection forever.
            with anyio.move_on_after(self.status_timeout) as scope:
                doc = await self.status()
            if scope.cancelled_caught:
                return 503, dict(text), f"status not available within {self.status_timeout:g} s\n".encode()
            body = (json.dumps(doc, default=str, indent=2) + "\n").encode()
            headers = {"Content-Type": JSON_CONTENT_TYPE}
        if method == "HEAD":
            headers["Content-Length"] = str(len(body))
            body = b""
        return 200, headers, body

    def _host_allowed(self, host: str) -> bool:
        """Whether a Host header names this server: its bound address, loopback, or an IP literal."""
        name = _strip_port(host).lower()
        if name in LOOPBACK_HOSTS or (self.host is not None and name == self.host.lower()):
            return True
        # A bare IP address cannot be rebound to another server; a name can.
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    async def _read_head(self, stream: SocketStream) -> bytes:
        """The request line and headers, at most MAX_HEADER_BYTES, within header_timeout."""
        raw = b""
        with anyio.move_on_after(self.header_timeout) as scope:
            while not _END_OF_HEAD.search(raw):
                if len(raw) >= MAX_HEADER_BYTES:
                    raise _BadRequest(431, f"request head larger than {MAX_HEADER_BYTES} bytes")
                raw += await stream.receive(MAX_HEADER_BYTES - len(raw))
        if scope.cancelled_caught:
            raise _BadRequest(408, f"no complete request within {self.header_timeout:g} s")
        return raw


_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
"""The empty line that ends the head; bare LF too, as in requests typed into nc."""


def _host_header(raw: bytes) -> str | None:
    """The value of the first Host header in the head ``raw``, or None."""
    for line in raw.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            return value.strip().decode("latin-1")
    return None


def _strip_port(host: str) -> str:
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` -> the name or address alone."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _peer(stream: SocketStream) -> str:
    """The client's address (without the port)."""
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except anyio.TypedAttributeLookupError:  # a stream without one: one bucket for all of them
        return ""
    return str(address[0]) if isinstance(address, tuple) else str(address)


def _request_line(raw: bytes) -> tuple[str, str]:
    """Method and path (query string dropped) from the first line of ``raw``."""
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/"):
        raise _BadRequest(400, "malformed request line")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(505, f"unsupported {version}")
    return method, target.split("?", 1)[0]
