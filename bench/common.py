"""What every benchmark shares: the sbtest table, daemon processes, the control socket, statistics.

The measurement modules import from here, from :mod:`loadkit` (the sbtest table, sysbench, pacing:
what ``drill/`` uses too) and from :mod:`bench.keepup`, and never from :mod:`bench.run`: running
``python -m bench.run`` loads ``bench/run.py`` as ``__main__``, and importing it again would load a
second copy of everything it imports (a :class:`BenchError` raised in one part would then not be
caught as the same class in ``main``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadkit import LoadError, create_sbtest_sql, fill_sbtest_sql, reap

from tablemover.local.mariadb import LocalMariaDB, LocalPair, pair_config

TABLE = "sbtest1"
RUN_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 15.0  # the spec's SIGTERM bound is 10 s; a little slack for a loaded machine

MSG_STATE_CHANGED = "state changed"
MSG_RESUMING = "resuming move from checkpoint"
MSG_CAUGHT_UP = "copy complete and caught up"
MSG_POSTPONED = "cutover postponed"  # a prefix: the message goes on with how to release it
MSG_OUTAGE = "cutover outage"
MSG_WINDOW_OPEN = "rollback window open"
MSG_ROLLBACK_OUTAGE = "rollback outage"
MSG_DRAINED = "drained"  # once after the cutover's RENAME, once more after a rollback's
MSG_GATE = "checksum before cutover: source and target equal"

# A measurement could not be taken (a run failed, or its result is wrong). What the shared load code
# raises (sysbench prepare failed, printed no report) is one of those here, so it is the same class:
# every ``except BenchError`` sees it.
BenchError = LoadError


# --- the sbtest table ---------------------------------------------------------------------------


def create_filled_table(server: LocalMariaDB, db: str, rows: int, table: str = TABLE) -> None:
    """Create schema ``db`` with one sbtest-shaped ``table`` of ``rows`` deterministic rows (ids 1..rows)."""
    server.execute(
        f"CREATE DATABASE `{db}`", f"USE `{db}`", create_sbtest_sql(table), fill_sbtest_sql(table, rows)
    )


def content_digest(server: LocalMariaDB, db: str, table: str) -> tuple[int, int]:
    """(row count, order-independent checksum) of a sbtest-shaped table, to compare source and target."""
    rows = server.execute(
        f"SELECT COUNT(*), COALESCE(BIT_XOR(CRC32(CONCAT_WS('|', id, k, c, pad))), 0) FROM `{db}`.`{table}`"
    )
    count, digest = rows[0]
    return int(str(count)), int(str(digest))


def check_equal(pair: LocalPair, src: tuple[str, str], dst: tuple[str, str], when: str) -> int:
    """Raise :class:`BenchError` unless source ``src`` (db, table) and target ``dst`` hold the same
    rows; returns the row count."""
    source, target = content_digest(pair.source, *src), content_digest(pair.target, *dst)
    if source != target:
        raise BenchError(
            f"{when}: target {dst[0]}.{dst[1]} (rows, crc) {target} differs from "
            f"source {src[0]}.{src[1]} {source}"
        )
    return source[0]


def table_digest(server: LocalMariaDB, db: str, table: str) -> tuple[int, int]:
    """(row count, order-independent checksum) of any table: every column of every row, NULL told
    apart from every value, compared as the bytes the server returns (DECIMAL, DATETIME(6), JSON,
    ENUM and SET as text, BLOB as bytes)."""
    columns = [
        str(name)
        for (name,) in server.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
        )
    ]
    if not columns:
        raise BenchError(f"{db}.{table} does not exist")
    row_text = ", ".join(f"COALESCE(HEX(CAST(`{c}` AS BINARY)), 'N')" for c in columns)
    rows = server.execute(
        f"SELECT COUNT(*), COALESCE(BIT_XOR(CAST(CONV(LEFT(MD5(CONCAT_WS('|', {row_text})), 16), 16, 10) "
        f"AS UNSIGNED)), 0) FROM `{db}`.`{table}`"
    )
    count, digest = rows[0]
    return int(str(count)), int(str(digest))


def check_same_rows(pair: LocalPair, src: tuple[str, str], dst: tuple[str, str], when: str) -> int:
    """Like :func:`check_equal` for a table of any shape (:func:`table_digest`); returns the row count."""
    source, target = table_digest(pair.source, *src), table_digest(pair.target, *dst)
    if source != target:
        raise BenchError(
            f"{when}: target {dst[0]}.{dst[1]} (rows, digest) {target} differs from "
            f"source {src[0]}.{src[1]} {source}"
        )
    return source[0]


def gtid_pos(server: LocalMariaDB) -> str:
    """The server's current binlog GTID position (where a new stream would start)."""
    return str(server.execute("SELECT @@global.gtid_binlog_pos")[0][0] or "")


# MariaDB GTID positions, parsed here rather than with tablemover.gtid so that the benchmark's idea
# of "applied covers the source" does not share the daemon's code.
Position = dict[int, int]


def parse_position(text: str) -> Position:
    """``"0-1-42,1-5-7"`` -> ``{0: 42, 1: 7}`` (domain -> sequence number)."""
    out: Position = {}
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if part:
            domain, _server, seq = part.split("-")
            out[int(domain)] = int(seq)
    return out


def covers(applied: Position, wanted: Position) -> bool:
    """Whether ``applied`` includes every transaction of ``wanted`` (per domain, seq >=)."""
    return all(applied.get(domain, -1) >= seq for domain, seq in wanted.items())


def total_seq(pos: Position) -> int:
    """Sum of the sequence numbers: a transaction counter while only the source's domain moves."""
    return sum(pos.values())


# Extra keys for both server sections of a move's config: the ``tls`` part's TLS settings.
ServerKeys = dict[str, str]


def write_config(
    pair: LocalPair,
    workdir: Path,
    name: str,
    database: str,
    tables: list[str],
    *,
    server_keys: ServerKeys | None = None,
    throttle: dict[str, Any] | None = None,
    **move_extra: Any,
) -> Path:
    """A move config for ``database.tables`` into ``<database>_dst``; returns its path.

    ``server_keys`` (e.g. ``tls_mode``, ``tls_ca``) go into both ``[source]`` and ``[target]``;
    ``throttle`` is the ``[throttle]`` section (the ``replica`` part's watched replica)."""
    move = {
        "name": name,
        "database": database,
        "target_database": f"{database}_dst",
        "state_database": f"{database}_state",  # dropped with the part's schemas
        "tables": tables,
        **move_extra,
    }
    keys = dict(server_keys or {})
    text = pair_config(
        pair,
        workdir,
        move,
        control={"socket": socket_path(workdir, name)},
        source=keys,
        target=keys,
        throttle=throttle or {},
    )
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


def socket_path(workdir: Path, name: str) -> str:
    """Where the daemon of move ``name`` listens (see :func:`write_config`)."""
    return str(workdir / f"{name}.sock")


# --- daemon processes ---------------------------------------------------------------------------


def daemon_env() -> dict[str, str]:
    """The environment without any TABLEMOVER_* variable: those would change the run (config
    overrides, fault injection)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TABLEMOVER_")}


@dataclass
class Daemon:
    """One ``tablemover --log-format json run`` process, its JSON log in a file.

    It is reaped with ``os.wait4`` rather than ``Popen.wait`` so that its own peak RSS comes back
    with its exit status (``RUSAGE_CHILDREN`` would be the maximum over every child of the bench).
    """

    config: Path
    log_path: Path
    stop_before_cutover: bool = False
    proc: subprocess.Popen[bytes] | None = None
    returncode: int | None = None
    maxrss_kb: int = 0
    cpu_total_s: float = 0.0  # user + system CPU of the whole run, known once reaped
    started_at: float = 0.0  # time.time(), comparable with the log's "ts"
    ended_at: float = 0.0
    _log_offset: int = 0
    _lines: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> Daemon:
        """Start it (its own session: a Ctrl-C on the terminal reaches only the bench, which stops it)."""
        cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run"]
        if self.stop_before_cutover:
            cmd.append("--stop-before-cutover")
        cmd += ["-c", str(self.config)]
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=daemon_env(), start_new_session=True
            )
        RUNNING.append(self)
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code once it has exited (reaping it), else None."""
        if self.returncode is not None or self.proc is None:
            return self.returncode
        reaped = reap(self.proc)
        if reaped is None:
            return None
        self.ended_at = time.time()
        self.returncode, usage = reaped
        self.maxrss_kb = int(usage.ru_maxrss)  # kilobytes on Linux
        self.cpu_total_s = usage.ru_utime + usage.ru_stime
        with contextlib.suppress(ValueError):
            RUNNING.remove(self)
        return self.returncode

    def wait(self, timeout_s: float = RUN_TIMEOUT_S, interval_s: float = 0.02) -> int:
        """Wait for the exit; raise :class:`BenchError` (and kill it) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (rc := self.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                raise BenchError(f"tablemover run did not finish within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(interval_s)
        return rc

    def kill(self) -> float:
        """SIGKILL it and reap it; returns the ``time.time()`` just before the signal."""
        at = time.time()
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            while self.poll() is None:
                time.sleep(0.002)
        return at

    def terminate(self) -> None:
        """SIGTERM (the daemon keeps its state and exits), SIGKILL if it does not within the bound."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(BenchError):  # wait() has killed it then
                self.wait(STOP_TIMEOUT_S)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) it has used so far; 0 once it has exited."""
        return process_cpu_s(self.pid) if self.poll() is None else 0.0

    @property
    def peak_rss_mb(self) -> float:
        """Peak resident set size of the exited process, in MB."""
        return round(self.maxrss_kb / 1024, 1)

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (read incrementally)."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a partial last line is read again next time
        self._log_offset += end
        for raw in data[:end].splitlines():
            try:
                parsed = json.loads(raw)
            except ValueError:
                continue  # a library's stray non-JSON output
            if isinstance(parsed, dict):
                self._lines.append(parsed)
        return self._lines

    def find(self, msg: str, prefix: bool = False, **fields: Any) -> dict[str, Any] | None:
        """The first log line with message ``msg`` (or starting with it) whose fields equal ``fields``."""
        for line in self.lines():
            text = str(line.get("msg", ""))
            if (text.startswith(msg) if prefix else text == msg) and all(
                line.get(k) == v for k, v in fields.items()
            ):
                return line
        return None

    def first(self, msg: str, **fields: Any) -> dict[str, Any]:
        """Like :meth:`find`, but a missing line is a :class:`BenchError`."""
        line = self.find(msg, **fields)
        if line is None:
            raise BenchError(f"tablemover run logged no {msg!r} line with {fields}")
        return line

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for error messages."""
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""


def wait_for_line(daemon: Daemon, msg: str, timeout_s: float, what: str) -> dict[str, Any]:
    """Wait until the running daemon logs ``msg``; its line. :class:`BenchError` when the daemon exits
    first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while (line := daemon.find(msg)) is None:
        if daemon.poll() is not None:
            raise BenchError(
                f"{what}: tablemover run exited {daemon.returncode} before {msg!r}:\n{daemon.tail()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: no {msg!r} within {timeout_s:.0f} s:\n{daemon.tail()}")
        time.sleep(0.02)
    return line


RUNNING: list[Daemon] = []  # every daemon not yet reaped, so an interrupt stops exactly those


def stop_all_daemons() -> None:
    """SIGKILL every daemon the bench started that still runs."""
    for daemon in list(RUNNING):
        with contextlib.suppress(OSError):
            daemon.kill()


def run_tablemover(
    config: Path, label: str, log_path: Path | None = None, stop_before_cutover: bool = True
) -> Daemon:
    """Run ``tablemover run -c config`` to completion; raise :class:`BenchError` (with its log) on failure.

    By default it stops once copied and caught up: the cutover is not what the copy and binlog
    benchmarks measure, and the binlog benchmark resumes the same move afterwards.
    """
    slug = "".join(c if c.isalnum() else "-" for c in label)
    log = log_path or config.parent / f"{config.stem}-{slug}.log"
    daemon = Daemon(config, log, stop_before_cutover=stop_before_cutover).start()
    try:
        rc = daemon.wait(RUN_TIMEOUT_S)
    except BenchError as exc:
        raise BenchError(f"tablemover run ({label}): {exc}") from exc
    if rc != 0:
        raise BenchError(f"tablemover run ({label}) exited {rc}:\n{daemon.tail()}")
    return daemon


def preflight_tls(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """Per server, how the daemon's preflight says its connection is protected (its ``preflight:
    <role> connection`` lines): ``encrypted``, ``verified``, ``tls_version``, ``tls_mode``."""
    out: dict[str, dict[str, Any]] = {}
    for role in ("source", "target"):
        line = daemon.find(f"preflight: {role} connection", prefix=True)
        if line is not None:
            out[role] = {k: line.get(k) for k in ("tls_mode", "encrypted", "verified", "tls_version")}
    return out


def wall_s(daemon: Daemon) -> float:
    """Seconds from start to exit of a finished daemon."""
    return daemon.ended_at - daemon.started_at


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc (0 if unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces; the fields after its ")" are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of process ``pid`` (those alive now) have spent runnable but waiting for a
    core (``/proc/PID/task/*/schedstat``, second field); 0 if unreadable.

    Next to the CPU seconds it tells a process that is slow because it is starved of CPU (it wanted
    to run and waited) from one that is slow because it waits for something else (it was not runnable).
    """
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over all cores (``/proc/stat``): with
    :func:`process_cpu_s` of our own processes it tells how much of the machine something else used
    (another tenant's tests on a shared machine)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


# --- the control socket -------------------------------------------------------------------------


def control(path: str, cmd: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """Send one command on the daemon's control socket (one JSON line each way); None when nothing
    answers (not listening yet, or gone). Plain sockets, so a sample costs no event loop start-up."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(path)
            s.sendall((json.dumps({"cmd": cmd}) + "\n").encode())
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
    except OSError:
        return None
    try:
        reply = json.loads(raw)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def status(path: str) -> dict[str, Any] | None:
    """The daemon's ``status`` reply when it answers with ``ok`` (its pipeline is up), else None."""
    reply = control(path, "status")
    return reply if reply is not None and reply.get("ok") else None


# --- small things -------------------------------------------------------------------------------


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.splitlines()[-lines:])


def rate(count: float, seconds: float) -> float:
    """``count / seconds``, 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (an observed value; with fewer than 100 samples p99 is the maximum)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
