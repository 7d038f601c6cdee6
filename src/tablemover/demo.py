"""``tablemover demo``: the whole mission on a laptop, with nothing but ``mariadbd`` installed.

Starts a source and a target MariaDB under a temp dir, seeds three tables, keeps writing to them,
runs a move, SIGKILLs it once mid-copy and restarts it (resume), lets it cut over, verifies the
result with chunked checksums and prints a summary. The servers are removed at the end. With
``--rollback`` the move keeps a rollback window open after the cutover: the application writes to
the target for a moment, then ``tablemover rollback`` takes the move back to the source, and the
source is compared with what the target held. With ``--replica`` a GTID replica of the source is
started too and the move reads its rows, checksums and binlog there (``[replica]``, issue #24);
the RENAME stays on the primary, and the demo shows where rows were read (``status``'s
``reading_from``, and rows read per server from ``userstat``).

What the demo shows comes from the daemon's documented interfaces, not from its screen: the JSON
log lines (state changes, resume point, outage) and ``status`` over the control socket (rows per
table, what the copy waits for). The daemon runs exactly as under systemd (JSON logs, no
terminal), and the demo draws the view itself: rich progress bars and colour when its stdout is a
terminal, the same facts as plain lines otherwise. Running the daemon under a pty would give its
own bars, but also every log line it writes (a dozen throttle notes a second at full speed), and
the demo would have to parse text logs back to know when to kill it and what to summarise.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import pymysql
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from tablemover.config import load_config
from tablemover.errors import MoveFailed
from tablemover.local.mariadb import (
    LocalMariaDB,
    grant_least,
    grant_reader,
    pair_config,
    replicate,
    start_pair,
)
from tablemover.verify import verify

TABLES = ("customers", "orders", "order_items")
SCHEMA = {
    "customers": "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
    "email VARCHAR(128), created DATETIME(6) NOT NULL, balance DECIMAL(12,2) NOT NULL DEFAULT 0)",
    "orders": "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, "
    "status ENUM('new','paid','shipped') NOT NULL, total DECIMAL(12,2) NOT NULL, note TEXT, "
    "KEY (customer_id))",
    "order_items": "CREATE TABLE order_items (order_id BIGINT NOT NULL, line INT NOT NULL, sku VARCHAR(32) "
    "NOT NULL, qty INT NOT NULL, PRIMARY KEY (order_id, line))",
}
SEED = {
    "customers": "INSERT INTO customers SELECT seq, CONCAT('customer ', seq), "
    "CONCAT('c', seq, '@example.com'), NOW(6) - INTERVAL seq SECOND, seq % 1000 FROM seq_1_to_{n}",
    "orders": "INSERT INTO orders SELECT seq, seq % {c} + 1, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'), "
    "seq % 500 + 0.99, IF(seq % 7 = 0, CONCAT('gift wrap ', seq), NULL) FROM seq_1_to_{n}",
    "order_items": "INSERT INTO order_items SELECT seq DIV 2 + 1, seq % 2 + 1, CONCAT('SKU-', seq % 997), "
    "seq % 5 + 1 FROM seq_1_to_{n}",
}

# The first daemon is killed once this share of the seeded rows is copied: late enough that the
# bars have visibly moved, early enough that the kill lands inside a table (customers is the first
# tenth, orders the next four) and most of the copy happens after the resume.
KILL_AT = 0.25
POLL_S = 0.05  # how often the daemon's log is read: state changes show within this
STATUS_EVERY_S = 0.1  # how often the control socket is asked for rows per table
PLAIN_PROGRESS_EVERY_S = 0.5  # without a terminal: a progress line at most this often

# Info lines of the daemon shown as they are: steps between the states that take a while.
NARRATED = ("checksum", "cutover postponed", "cutover released")

# What each state of the README's cutover diagram means, said as it is entered.
STATE_TEXT = {
    "PREPARED": "target tables created; binlog position {start} captured before the first chunk",
    "COPYING": "copying rows in key order while every source write is applied from the binlog",
    "CUTOVER_STARTED": "the intent to cut over is in the checkpoint before anything is renamed",
    "RENAMED": "source tables renamed in one RENAME; application writes to them fail from now",
    "DRAINED": "the target has applied every source write up to the RENAME",
    "HOOK_FIRED": "on-success ran: the application writes to the target",
    "DONE": "move finished",
    "WINDOW_OPEN": "rollback window open: the target's writes stream back to the renamed source tables",
    "ROLLBACK_STARTED": "the intent to roll back is in the checkpoint before anything is renamed",
    "ROLLBACK_RENAMED": "target tables renamed away in one RENAME; application writes to them fail",
    "ROLLBACK_DRAINED": "the source has every target write up to that RENAME",
    "ROLLED_BACK": "source tables back under their names; on-rollback ran: the app writes to the source",
    "ABORTED": "stopped by the operator",
    "FAILED": "the move failed; see the daemon log",
}


class _Traffic:
    """Application-like writes until the tables are renamed away (that is the cutover)."""

    def __init__(self, server: LocalMariaDB, database: str, customers: int, next_order: int) -> None:
        self.server, self.database = server, database
        self.customers, self.next_order = customers, next_order
        self.transactions = 0
        self.stopped_by_cutover = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # After a cutover the thread ends by itself at its next write (the tables are gone); give it
        # that moment before stopping it, so the summary tells the truth.
        self._thread.join(timeout=2)
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        rnd = random.Random(7)
        conn = pymysql.connect(unix_socket=self.server.socket, user="root", database=self.database)
        try:
            while not self._stop.is_set():
                try:
                    self._one_order(conn.cursor(), rnd)
                    conn.commit()
                except pymysql.err.OperationalError as exc:
                    # A deadlock with the copier's locking read or a lock wait: an application retries.
                    if exc.args[0] not in (1205, 1213):
                        raise
                    conn.rollback()
                    continue
                except pymysql.err.ProgrammingError as exc:
                    if exc.args[0] != 1146:  # table doesn't exist: renamed away by the cutover
                        raise
                    self.stopped_by_cutover = True
                    return
                self.next_order += 1
                self.transactions += 1
                time.sleep(0.002)
        finally:
            conn.close()

    def _one_order(self, cur: Any, rnd: random.Random) -> None:
        order = self.next_order
        cur.execute(
            "INSERT INTO orders VALUES (%s, %s, 'new', %s, NULL)",
            (order, rnd.randint(1, self.customers), rnd.randint(100, 9999) / 100),
        )
        cur.execute("INSERT INTO order_items VALUES (%s, 1, %s, %s)", (order, f"SKU-{order % 997}", 1))
        cur.execute(
            "UPDATE customers SET balance = balance + 1 WHERE id = %s", (rnd.randint(1, self.customers),)
        )
        if rnd.random() < 0.2:
            cur.execute("UPDATE orders SET status='paid' WHERE id = %s", (rnd.randint(1, order),))
        if rnd.random() < 0.05:
            cur.execute("DELETE FROM order_items WHERE order_id = %s", (rnd.randint(1, order),))


class _LogTail:
    """The daemon's JSON log lines, read as they are written (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        """Events written since the last call; lines that are not JSON (a traceback) are skipped."""
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        out = []
        for line in lines:
            if line.startswith(b"{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out


def _status(path: str) -> dict[str, Any] | None:
    """The running daemon's ``status`` reply over the control socket; None when none answers.

    A plain blocking socket: the protocol is one JSON line each way, and the demo's loop is not async.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(b'{"cmd": "status"}\n')
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
        reply: dict[str, Any] = json.loads(raw)
    except (OSError, ValueError):
        return None  # not up yet, killed, or exited: the log says which
    return reply if reply.get("ok") else None


class _Rows(ProgressColumn):
    """Rows copied of the total, with thousands separators."""

    def render(self, task: Task) -> Text:
        return Text(f"{int(task.completed):>9,}/{int(task.total or 0):,}", style="progress.download")


class _RowsPerSecond(ProgressColumn):
    """rich's speed column speaks bytes; these are rows."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.finished:
            return Text(" " * 16)  # copied before a restart: no rate of this run to show
        return Text(f"{speed or 0:>9,.0f} rows/s", style="progress.data.speed")


@dataclass
class _Table:
    """What the demo knows of one table's copy."""

    seeded: int
    copied: int = 0
    done: bool = False

    @property
    def total(self) -> int:
        # The seeded count is exact; the traffic adds a few rows while the copy runs.
        return self.copied if self.done else max(self.seeded, self.copied)


@dataclass
class _Screen:
    """Where the demo narrates: bars and colour on a terminal, plain lines in a pipe or a file."""

    tty: bool
    tables: dict[str, _Table]
    started: float = field(default_factory=time.time)
    console: Console = field(init=False)
    bars: Progress | None = field(default=None, init=False)
    tasks: dict[str, TaskID] = field(default_factory=dict, init=False)
    copy_over: bool = field(default=False, init=False)
    waiting: str = field(default="", init=False)
    _last_line: tuple[float, int] = field(default=(0.0, 0), init=False)

    def __post_init__(self) -> None:
        # Used on a terminal only; without one, say() prints plain text (no escape codes).
        self.console = Console(file=sys.stdout, highlight=False)

    def say(self, *parts: str | tuple[str, str], at: float | None = None) -> None:
        """One narration line; ``at`` (epoch seconds) prefixes the time since the move started."""
        line = Text()  # Text("...", style=) would dim the whole line, not just the prefix
        line.append("demo: ", style="dim")
        if at is not None:
            line.append(f"{max(at - self.started, 0.0):5.1f} s  ", style="dim")
        line.append_text(Text.assemble(*parts))
        if self.tty:
            self.console.print(line, soft_wrap=True)
        else:
            print(line.plain, flush=True)

    def update(self, waiting: str) -> None:
        """Show the tables' rows: bars on a terminal, a line every half second otherwise."""
        self.waiting = waiting
        if self.copy_over:
            return
        if self.tty:
            self._draw_bars()
            return
        now, copied = time.monotonic(), sum(t.copied for t in self.tables.values())
        last_at, last_copied = self._last_line
        if not last_at:
            self._last_line = (now, copied)  # the first figures: the base of the rate
            return
        if now - last_at < PLAIN_PROGRESS_EVERY_S or copied == last_copied:
            return
        if all(t.done for t in self.tables.values()):
            return  # the "copied" line of end_copy() follows
        rate = (copied - last_copied) / (now - last_at)
        self._last_line = (now, copied)
        parts = [
            f"{name} {t.copied:,}/{t.total:,}" + (" done" if t.done else "")
            for name, t in self.tables.items()
        ]
        text = "copying  " + ", ".join(parts) + f"  ({max(rate, 0):,.0f} rows/s)"
        self.say(text + (f"  waiting: {waiting}" if waiting else ""), at=time.time())

    def resumed(self) -> None:
        """After a restart the bars start again from the checkpoint, saying where."""
        # Rates count from the resume point, not from the killed daemon's last figures.
        self._last_line = (time.monotonic(), sum(t.copied for t in self.tables.values()))
        if not self.tty or self.bars is None:
            return
        for name, t in self.tables.items():
            self.bars.reset(
                self.tasks[name],
                completed=t.copied,
                total=max(t.total, 1),
                note=f"resumed at {t.copied:,}" if not t.done else "copied before the kill",
                waiting="",  # reset() replaces every field
            )
        self._draw_bars()

    def end_copy(self, at: float) -> None:
        """The copy is complete (at ``at``): the bars stay on screen with their final figures."""
        if self.copy_over:
            return
        self.copy_over = True
        if self.tty:
            self._draw_bars()
            if self.bars is not None:
                self.bars.stop()
            return
        parts = [f"{name} {t.copied:,}" for name, t in self.tables.items()]
        self.say("copied   " + ", ".join(parts), at=at)

    def close(self) -> None:
        """Stop drawing (the bars' refresh thread), whatever state the move is in."""
        if self.bars is not None:
            self.bars.stop()

    def _draw_bars(self) -> None:
        if self.bars is None:
            width = max(len(name) for name in self.tables)
            self.bars = Progress(
                TextColumn("  {task.description}"),
                BarColumn(bar_width=32),
                _Rows(),
                _RowsPerSecond(),
                TextColumn("{task.fields[note]}", style="dim"),
                TextColumn("{task.fields[waiting]}", style="yellow"),
                console=self.console,
            )
            for name, t in self.tables.items():
                self.tasks[name] = self.bars.add_task(
                    name.ljust(width), total=max(t.total, 1), note="", waiting=""
                )
            self.bars.start()
        for name, t in self.tables.items():
            note = "waiting: " + self.waiting if self.waiting and not t.done else ""
            self.bars.update(self.tasks[name], completed=t.copied, total=max(t.total, 1), waiting=note)


@dataclass
class _Watch:
    """Turns the daemon's log lines and status replies into what the screen shows."""

    screen: _Screen
    socket_path: str
    state: str = ""
    copy_complete: bool = False
    kill_landed: str = ""  # "COPYING at 70,000 rows", once the first daemon is killed
    resumed_after_s: float | None = None
    killed_at: float = 0.0
    outage: dict[str, Any] = field(default_factory=dict)
    rollback_outage: dict[str, Any] = field(default_factory=dict)
    on_window: Any = None  # called once when the rollback window opens (--rollback)
    # Called once when the copy is seen held by the target replica's stopped SQL thread: it
    # starts the thread again (the demo's replica throttle, issue #27).
    on_replica_held: Any = None
    answers: bool = False  # whether the daemon has a checkpoint to answer status from
    reading_from: str = ""  # status's reading_from: the server the copy reads rows and binlog from
    primary: str = ""  # --replica: the primary's address, named where the RENAME is said
    _held: dict[str, Any] | None = None  # a state change whose details come on the next line
    _waiting_said: str = ""

    def run(self, proc: subprocess.Popen[bytes], tail: _LogTail, kill_first: bool) -> int:
        """Follow one daemon until it exits (or, with ``kill_first``, until it is SIGKILLed)."""
        next_status = 0.0
        self.answers = False
        while True:
            for ev in tail.read():
                self._on_event(ev)
            if self.state == "COPYING" and not self.copy_complete:
                self.screen.update(self.screen.waiting)  # "table copied" lines move the bars too
            code = proc.poll()
            if code is not None:
                for ev in tail.read():
                    self._on_event(ev)
                self._flush_held()
                return code
            if self.answers and time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                self._on_status(_status(self.socket_path))
            if kill_first and self._kill_now():
                self._flush_held()
                copied = sum(t.copied for t in self.screen.tables.values())
                proc.send_signal(signal.SIGKILL)
                code = proc.wait()
                self.killed_at = time.time()
                self.kill_landed = f"{self.state or 'PREPARED'} at {copied:,} rows copied"
                self.screen.say(
                    ("SIGKILLed the move", "bold red"),
                    f" in {self.kill_landed} (as a host crash would); restarting it",
                    at=self.killed_at,
                )
                return code
            time.sleep(POLL_S)

    def _kill_now(self) -> bool:
        seeded = sum(t.seeded for t in self.screen.tables.values())
        copied = sum(t.copied for t in self.screen.tables.values())
        # A small demo copies faster than the status is polled: then kill as soon as it is over.
        return (
            copied >= KILL_AT * seeded or self.copy_complete or self.state not in ("", "PREPARED", "COPYING")
        )

    def _on_status(self, status: dict[str, Any] | None) -> None:
        if status is None:
            return
        for name, figures in status.get("tables", {}).items():
            if name in self.screen.tables:
                table = self.screen.tables[name]
                table.copied, table.done = int(figures["rows_copied"]), bool(figures["done"])
        reading = str(status.get("reading_from") or "")
        if reading and reading != self.reading_from:
            self.reading_from = reading
            self.screen.say(
                ("reading rows and the binlog from ", "bold"), (reading, "bold green"), at=time.time()
            )
        waiting = str(status.get("waiting_for") or "")
        if (
            self.on_replica_held is not None
            and waiting.startswith("target replica")
            and "SQL thread" in waiting
        ):
            on_held, self.on_replica_held = self.on_replica_held, None
            self.screen.say(("copy held: ", "bold yellow"), waiting, at=time.time())
            on_held()
        if self.state == "COPYING" and not self.copy_complete:
            self.screen.update(waiting)
        elif waiting and waiting != self._waiting_said:
            # Past the copy there are no bars to carry it: a cutover that waits says so in a line.
            self.screen.say(("waiting: ", "yellow"), waiting, at=time.time())
        self._waiting_said = waiting

    def _on_event(self, ev: dict[str, Any]) -> None:
        msg, at = str(ev.get("msg", "")), float(ev.get("ts", time.time()))
        if self._held is not None and msg not in ("source tables renamed", "drained"):
            self._flush_held()
        if msg == "preflight passed":
            again = " (after the restart)" if self.killed_at else ""
            self.screen.say(f"daemon started{again}: preflight passed, {ev.get('checks')} checks", at=at)
            if self.killed_at:
                self.resumed_after_s = at - self.killed_at
        elif msg == "prepared move":
            self.state = "PREPARED"
            self._say_state(at, "PREPARED", STATE_TEXT["PREPARED"].format(start=ev.get("start_gtid")))
        elif msg == "resuming move from checkpoint":
            self._on_resume(ev, at)
        elif msg == "state changed":
            # A daemon asked for status before it holds its checkpoint logs a warning: ask only
            # once a state change or the resume line says it has one.
            self.answers = True
            self.state = str(ev.get("to"))
            if self.state in ("RENAMED", "DRAINED"):
                self._held = ev  # said with the position from the next line
            else:
                self._say_state(at, self.state, STATE_TEXT.get(self.state, ""))
            if self.state not in ("PREPARED", "COPYING"):
                self.screen.end_copy(at)
            if self.state == "WINDOW_OPEN" and self.on_window is not None:
                on_window, self.on_window = self.on_window, None
                on_window()
        elif msg == "copy complete and caught up":
            # The last figures per table, asked while the daemon still answers, end the bars.
            self._on_status(_status(self.socket_path))
            self.copy_complete = True
            self.screen.end_copy(at)
            self.screen.say(
                f"copy complete and caught up: {int(ev.get('rows_copied', 0)):,} rows copied, "
                f"{int(ev.get('events_applied', 0)):,} binlog events applied",
                at=at,
            )
        elif msg == "table copied" and str(ev.get("table")) in self.screen.tables:
            table = self.screen.tables[str(ev["table"])]
            table.copied, table.done = int(ev.get("rows", table.copied)), True
        elif msg in ("source tables renamed", "drained") and self._held is not None:
            self._flush_held(ev)
        elif msg == "cutover outage":
            self.outage = ev
            attempts = int(ev.get("rename_attempts") or 1)
            self.screen.say(
                ("outage ", "bold"),
                (f"{ev.get('outage_ms')} ms", "bold magenta"),
                f": writes to the moved tables failed from the RENAME to this on-success hook"
                f" ({ev.get('lock_wait_ms')} ms of it the RENAME waiting for its metadata lock;"
                f" {attempts} RENAME attempt{'s' if attempts > 1 else ''})",
                at=at,
            )
        elif msg == "rollback outage":
            self.rollback_outage = ev
            self.screen.say(
                ("rollback outage ", "bold"),
                (f"{ev.get('outage_ms')} ms", "bold magenta"),
                ": writes to the target's tables failed from its RENAME to this on-rollback hook",
                at=at,
            )
        elif msg == "hook ran":
            self.screen.say(f"{ev.get('hook')} hook: {str(ev.get('output', '')).strip()}", at=at)
        elif msg.startswith(NARRATED) or ev.get("level") in ("warning", "error", "critical"):
            # What the daemon does between the states (the checksum before the cutover) and anything
            # it warns about (a retry, a blocked cutover) is what the move waits for: say it.
            fields = {k: v for k, v in ev.items() if k not in ("time", "ts", "level", "move", "msg", "exc")}
            detail = "  " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else ""
            level = str(ev.get("level", "info"))
            label = ("", "") if level == "info" else (f"daemon {level}: ", "yellow")
            self.screen.say(label, msg, detail, at=at)

    def _on_resume(self, ev: dict[str, Any], at: float) -> None:
        self.answers = True
        self.state = str(ev.get("state"))
        progress: dict[str, list[Any]] = ev.get("progress") or {}
        parts: list[str] = []
        copied: list[str] = []
        for name, table in self.screen.tables.items():
            rows, done = progress.get(name, [0, False])
            table.copied, table.done = int(rows), bool(done)
            if done:
                copied.append(name)
            else:
                parts.append(f"{int(rows):,} rows of {name}" if rows else f"the first row of {name}")
        text = f"resumed from the checkpoint in {self.state}"
        if parts:
            text += " at " + ", ".join(parts)
        if copied:
            text += f" ({', '.join(copied)} already copied)"
        self.screen.say((text, "bold green"), at=at)
        if self.state == "COPYING":
            self.screen.resumed()

    def _say_state(self, at: float, state: str, text: str) -> None:
        self.screen.say((f"{state:<17}", "bold cyan"), text, at=at)

    def _flush_held(self, detail: dict[str, Any] | None = None) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        state, at = str(held.get("to")), float(held.get("ts", time.time()))
        text = STATE_TEXT.get(state, "")
        if detail is not None and state == "RENAMED":
            text += f" (drain position {detail.get('drain_gtid')})"
            if self.primary:
                text += f"; the RENAME ran on the primary {self.primary}, the replica gets it by replication"
        elif detail is not None and state == "DRAINED":
            text += f" ({detail.get('drain_gtid')}; the drain took {detail.get('waited_ms')} ms)"
            if self.primary:
                text += ", read from the replica once it had executed the RENAME"
        self._say_state(at, state, text)


@contextlib.contextmanager
def _daemon(cmd: list[str], log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """A daemon process that never outlives the demo (Ctrl-C, an error in the demo)."""
    # stdin from /dev/null: the daemon must not share the operator's terminal.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_demo(rows: int = 200_000, keep: bool = False, rollback: bool = False, replica: bool = False) -> int:
    """Run the demo; returns the exit code. ``rollback``: keep a window open and roll back.
    ``replica``: start a GTID replica of the source too, and read the move from it (``[replica]``)."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tablemover-demo-"))
    customers, orders, items = rows // 10, rows * 4 // 10, rows // 2
    screen = _Screen(
        tty=sys.stdout.isatty(),
        tables={"customers": _Table(customers), "orders": _Table(orders), "order_items": _Table(items)},
    )
    also = ", a replica of the target and one of the source" if replica else ", and a replica of the target"
    screen.say(f"starting a source and a target MariaDB{also}, under {workdir}")
    pair = start_pair(root=workdir / "servers")
    reader = _ReadReplica(workdir / "servers" / "source-replica") if replica else None
    target_replica = _DemoReplica(workdir / "servers" / "target-replica")
    servers_s = time.monotonic() - started
    try:
        # The source's replica replicates from here (the schema and the seed on), once installed.
        seed_from = str(pair.source.execute("SELECT @@gtid_binlog_pos")[0][0] or "")
        pair.source.execute("CREATE DATABASE shop", "USE shop", *SCHEMA.values())
        pair.source.execute(
            "USE shop",
            SEED["customers"].format(n=customers),
            SEED["orders"].format(n=orders, c=customers),
            SEED["order_items"].format(n=items),
        )
        screen.say(
            f"seeded shop.customers ({customers:,}), shop.orders ({orders:,}), "
            f"shop.order_items ({items:,}); servers started in {servers_s:.1f} s, "
            f"seeded in {time.monotonic() - started - servers_s:.1f} s"
        )
        hooks = workdir / "hooks"
        hooks.mkdir()
        hook = hooks / "on-success"
        hook.write_text(
            '#!/bin/sh\necho "point the application at the target now '
            '(drain position $TABLEMOVER_DRAIN_GTID, attempt $TABLEMOVER_HOOK_ATTEMPT)"\n'
        )
        hook.chmod(0o755)
        if rollback:
            back = hooks / "on-rollback"
            back.write_text('#!/bin/sh\necho "point the application back at the source now"\n')
            back.chmod(0o755)
        cfg = workdir / "demo.toml"
        move = {
            "name": "demo",
            "database": "shop",
            "tables": list(TABLES),
            "chunk_size": 2000,
            "hooks_dir": str(hooks),
            "rollback_window_s": 600 if rollback else 0,
        }
        sections: dict[str, dict[str, Any]] = {"throttle": {"target_replicas": [target_replica.address]}}
        if reader is not None:
            sections["replica"] = {"host": "127.0.0.1", "port": reader.port}
        cfg.write_text(pair_config(pair, workdir, move, **sections))
        config = load_config(cfg)
        # Exactly what `tablemover check` prints for this config: the demo runs with least privilege.
        grant_least(pair, config.move)
        if reader is not None:
            reader.attach(pair.source, seed_from, screen)
        # The target's replica replicates from here on with its SQL thread stopped, so the copy is
        # held from its first chunk, saying why; the demo starts the thread when it sees that.
        target_replica.attach(pair.target)
        screen.say(
            f"target replica {target_replica.address}: its SQL thread stopped, so it falls behind the target"
        )
        traffic = _Traffic(pair.source, "shop", customers, orders + 1)
        traffic.start()
        screen.say("application traffic running: new orders, payments, balance updates, deletes")
        log = workdir / "daemon.log"
        log.touch()
        screen.say(f"starting the move: tablemover run (its JSON log: {log})")
        # JSON logs whatever the terminal: the demo reads them to draw its own view (module doc).
        cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run", "-c", str(cfg)]
        tail = _LogTail(log)
        watch = _Watch(screen, config.socket_path)
        if reader is not None:
            watch.primary = f"127.0.0.1:{pair.source.port}"
            reader.count_before(pair.source)

        def replica_runs() -> None:
            target_replica.server.execute("START SLAVE SQL_THREAD")
            screen.say("started the replica's SQL thread: it catches up and the copy goes on", at=time.time())

        watch.on_replica_held = replica_runs
        window = _WindowTraffic(pair.target, customers, screen, cfg) if rollback else None
        if window is not None:
            watch.on_window = lambda: window.start(traffic.next_order + 1_000_000)
        screen.started = time.time()
        move_started = time.monotonic()
        try:
            with log.open("ab") as out:
                with _daemon(cmd, out) as proc:
                    code = watch.run(proc, tail, kill_first=True)
                if watch.kill_landed:
                    with _daemon(cmd, out) as proc:
                        code = watch.run(proc, tail, kill_first=False)
        finally:
            screen.close()
        move_s = time.monotonic() - move_started
        traffic.stop()
        if window is not None:
            window.stop()
        if code != 0:
            screen.say(f"the move failed with exit code {code}; log: {log}")
            print(log.read_text()[-3000:])
            return 1
        read_lines = reader.summary(pair.source, watch) if reader is not None else []
        if window is not None:
            equal, total = _rolled_back_equal(pair.source, pair.target, config.move.rolledback)
            screen.say(
                "compared every table: source (original names) vs target (rolled-back names): "
                + ("equal" if equal else "DIFFERENT")
            )
            _summary(
                screen,
                watch,
                traffic,
                total,
                (move_s, 0.0),
                equal,
                time.monotonic() - started,
                window,
                read_lines,
            )
            return 0 if equal else 1
        verify_started = time.time()
        screen.say(
            "verifying: chunked checksums of every table, source (renamed) vs target", at=verify_started
        )
        report = anyio.run(verify, config)
        verify_s = time.time() - verify_started
        replica_equal = target_replica.equal(pair.target, list(TABLES))
        screen.say(f"target replica equal to the target: {'yes' if replica_equal else 'NO'}")
        total = sum(t.target_rows for t in report.tables)
        _summary(
            screen,
            watch,
            traffic,
            total,
            (move_s, verify_s),
            report.equal,
            time.monotonic() - started,
            extra=read_lines,
        )
        return 0 if report.equal else 1
    except MoveFailed as exc:
        screen.say(str(exc))
        return 1
    finally:
        if keep:
            screen.say(f"servers left running under {workdir}")
        else:
            target_replica.stop()
            if reader is not None:
                reader.stop()
            pair.cleanup()
            screen.say("servers stopped and removed")


class _BackgroundServer:
    """A third local server, installed and started in a thread while the source is seeded
    (installing a datadir is the slow part); :meth:`ready` waits for it on the demo's thread."""

    def __init__(self, server: LocalMariaDB) -> None:
        self.server = server
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self.server.install()
            self.server.start()
        except BaseException as exc:  # re-raised by ready(), on the demo's own thread
            self._error = exc

    def ready(self) -> LocalMariaDB:
        """The started server (raises what starting it raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.server

    def stop(self) -> None:
        """Stop the server (its files go with the pair's)."""
        self._thread.join()
        self.server.stop()


class _DemoReplica(_BackgroundServer):
    """A GTID replica of the demo's target, watched by the move ([throttle] target_replicas)."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalMariaDB(root, server_id=3, extra_args=("--skip-slave-start",)))

    @property
    def address(self) -> str:
        """ "host:port" as ``[throttle] target_replicas`` names it (its port is known once started)."""
        return f"127.0.0.1:{self.ready().port}"

    def attach(self, target: LocalMariaDB) -> None:
        """Replicate from the target's position now, the IO thread only (the SQL thread waits)."""
        replicate(self.ready(), target, threads="IO_THREAD")

    def equal(self, target: LocalMariaDB, tables: list[str]) -> bool:
        """Whether the replica, once caught up, holds what the target's ``shop`` tables hold."""
        self.server.execute("START SLAVE")  # a no-op when both threads run
        pos = target.execute("SELECT @@gtid_binlog_pos")[0][0]
        if self.server.execute(f"SELECT MASTER_GTID_WAIT('{pos}', 60)")[0][0] != 0:
            return False
        checksum = "CHECKSUM TABLE " + ", ".join(f"shop.{t}" for t in tables)
        return target.execute(checksum) == self.server.execute(checksum)


def _rows_read(server: LocalMariaDB) -> int:
    """Rows the server has read of the ``shop`` tables, under any name, since userstat was on."""
    found = server.execute(
        "SELECT COALESCE(SUM(ROWS_READ), 0) FROM information_schema.TABLE_STATISTICS "
        "WHERE TABLE_SCHEMA = 'shop'"
    )
    return int(str(found[0][0]))


class _ReadReplica(_BackgroundServer):
    """--replica: a GTID replica of the demo's source that the move reads rows and the binlog from
    (``[replica]``). It and the source count rows read per table (userstat), so the summary can say
    where the copy read."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            LocalMariaDB(
                root,
                server_id=5,
                extra_args=("--skip-slave-start", "--report-host=127.0.0.1", "--userstat=ON"),
            )
        )
        self._before: tuple[int, int] = (0, 0)

    @property
    def port(self) -> int:
        """Its port (known once started)."""
        return self.ready().port

    def attach(self, source: LocalMariaDB, start: str, screen: _Screen) -> None:
        """Replicate ``source`` from GTID ``start`` (before the schema was created) and wait until it
        holds everything the source has: the move's preflight reads the tables' definitions there."""
        waited = time.monotonic()
        replicate(self.server, source, start=start)
        grant_reader(self.server)
        pos = source.execute("SELECT @@gtid_binlog_pos")[0][0]
        if self.server.execute(f"SELECT MASTER_GTID_WAIT('{pos}', 120)")[0][0] != 0:
            raise MoveFailed(f"the source's replica 127.0.0.1:{self.port} did not catch up with {pos}")
        source.execute("SET GLOBAL userstat = ON")  # the replica counts from its start
        screen.say(
            f"source replica 127.0.0.1:{self.port} (GTID, log_slave_updates) caught up in "
            f"{time.monotonic() - waited:.1f} s: the move's [replica], it reads rows, checksums and "
            "the binlog there"
        )

    def count_before(self, source: LocalMariaDB) -> None:
        """Rows read so far on both servers (the replica has read the seed to replicate it)."""
        self._before = (_rows_read(source), _rows_read(self.server))

    def summary(self, source: LocalMariaDB, watch: _Watch) -> list[tuple[str, str, str]]:
        """The summary's lines: where rows were read, how many each server read, where the RENAME ran."""
        primary = _rows_read(source) - self._before[0]
        on_replica = _rows_read(self.server) - self._before[1]
        # The RENAME is the primary's: the replica has it once it holds the primary's position, and
        # then names the shop tables as the primary does (renamed, or back after a rollback).
        pos = source.execute("SELECT @@gtid_binlog_pos")[0][0]
        caught_up = self.server.execute(f"SELECT MASTER_GTID_WAIT('{pos}', 60)")[0][0] == 0
        tables = "SHOW TABLES FROM shop"
        replicated = caught_up and self.server.execute(tables) == source.execute(tables)
        return [
            ("rows read from", watch.reading_from or "not reported", "bold green"),
            (
                "rows read (userstat)",
                f"primary {primary:,}, replica {on_replica:,} of the shop tables during the move "
                "(the primary's: the writes to it; the replica's: the copy, the checksum and "
                "replication)",
                "",
            ),
            (
                "RENAME",
                f"on the primary {watch.primary}; the replica executed it by replication: "
                + ("yes" if replicated else "NO"),
                "",
            ),
        ]


class _WindowTraffic:
    """--rollback: the application on the target during the window, then the rollback asked for."""

    def __init__(self, target: LocalMariaDB, customers: int, screen: _Screen, cfg: Path) -> None:
        self.target, self.customers, self.screen, self.cfg = target, customers, screen, cfg
        self.traffic: _Traffic | None = None
        self.rollback_exit: int | None = None
        self._timer: threading.Timer | None = None

    def start(self, next_order: int) -> None:
        self.traffic = _Traffic(self.target, "shop", self.customers, next_order)
        self.traffic.start()
        self.screen.say(
            "the application now writes to the target; asking for a rollback in 3 s", at=time.time()
        )
        self._timer = threading.Timer(3.0, self._ask)
        self._timer.daemon = True
        self._timer.start()

    def _ask(self) -> None:
        self.screen.say("tablemover rollback", at=time.time())
        cmd = [sys.executable, "-m", "tablemover", "rollback", "--no-wait", "-c", str(self.cfg)]
        self.rollback_exit = subprocess.run(cmd, capture_output=True, check=False).returncode

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.join(timeout=30)
        if self.traffic is not None:
            self.traffic.stop()


def _rolled_back_equal(source: LocalMariaDB, target: LocalMariaDB, rolledback: Any) -> tuple[bool, int]:
    """(every table equal: row count and CHECKSUM TABLE on the same server version, rows on the source)."""

    def figures(server: LocalMariaDB, table: str) -> tuple[int, Any]:
        count = int(str(server.execute(f"SELECT COUNT(*) FROM shop.{table}")[0][0]))
        return count, server.execute(f"CHECKSUM TABLE shop.{table}")[0][1]

    pairs = [(figures(source, t), figures(target, rolledback(t))) for t in TABLES]
    return all(src == dst for src, dst in pairs), sum(src[0] for src, _ in pairs)


def _summary(
    screen: _Screen,
    watch: _Watch,
    traffic: _Traffic,
    total: int,
    took: tuple[float, float],
    equal: bool,
    demo_s: float,
    window: _WindowTraffic | None = None,
    extra: list[tuple[str, str, str]] | None = None,
) -> None:
    """The figures of the run; the labels are what scripts and tests look for.

    ``took`` is (the move from the first start to the exit of the restarted daemon, the verify).
    """
    move_s, verify_s = took
    if watch.kill_landed:
        after = f", resumed {watch.resumed_after_s:.1f} s after the kill" if watch.resumed_after_s else ""
        resume_text = f"yes, killed in {watch.kill_landed}{after}"
    else:
        resume_text = "no kill landed"
    outage = watch.outage
    outage_text = (
        f"{outage.get('outage_ms')} ms (RENAME to on-success hook; "
        f"{outage.get('lock_wait_ms')} ms of it the RENAME waiting for its lock)"
        if outage
        else "not measured"
    )
    lines: list[tuple[str, str, str]] = [
        ("tables moved", ", ".join(TABLES), ""),
        ("rows on the target", str(total), ""),
        (
            "app transactions",
            f"{traffic.transactions} during the move (writes stopped by the cutover: "
            f"{'yes' if traffic.stopped_by_cutover else 'no'})",
            "",
        ),
        ("resumed after kill", resume_text, ""),
        ("move wall time", f"{move_s:.1f} s ({total / move_s:,.0f} rows/s including the restart)", ""),
        ("cutover outage", outage_text, "bold magenta"),
        (
            "verify",
            f"{'all tables equal' if equal else 'DIFFERENCES FOUND'} ({verify_s:.1f} s)",
            "bold green" if equal else "bold red",
        ),
        ("total demo time", f"{demo_s:.1f} s", ""),
    ]
    if window is not None:
        back = watch.rollback_outage
        target_writes = window.traffic.transactions if window.traffic is not None else 0
        lines[1] = ("rows on the source", f"{total} after the rollback", "")
        lines[4] = ("move wall time", f"{move_s:.1f} s (copy, cutover, window and rollback)", "")
        lines[-2] = (
            "rolled back",
            f"{'source equals the target' if equal else 'DIFFERENCES FOUND'}: every table, after "
            f"{target_writes} app transactions on the target during the window",
            "bold green" if equal else "bold red",
        )
        lines.insert(
            -2,
            (
                "rollback outage",
                f"{back.get('outage_ms')} ms (target RENAME to on-rollback hook)" if back else "not measured",
                "bold magenta",
            ),
        )
    if extra:
        lines[2:2] = extra  # --replica: where rows were read, after the rows moved
    if screen.tty:
        screen.console.print()
        screen.console.print(Text("tablemover demo summary", style="bold"))
        for label, value, style in lines:
            screen.console.print(Text.assemble(f"  {label:<20} ", (value, style)), soft_wrap=True)
        return
    print()
    print("tablemover demo summary")
    for label, value, _ in lines:
        print(f"  {label:<20} {value}")
    sys.stdout.flush()
