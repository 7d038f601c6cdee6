"""Write load shared by the benchmarks (``bench/``) and the crash drill (``drill/``).

* :func:`create_sbtest_sql`, :func:`fill_sbtest_sql`: the sysbench ``sbtest`` table and a
  deterministic fill of it.
* :func:`ensure_sysbench` finds sysbench, installing Debian's package when it is missing and we may.
* :func:`sysbench_cmd` builds an ``oltp_write_only`` command line against a local server's socket;
  :func:`sysbench_prepare` runs its ``prepare``.
* :func:`parse_sysbench` reads sysbench's final report and its per-interval lines (tps, the interval's
  latency percentile, errors per second).
* :class:`SysbenchRun` runs sysbench in the background and reaps it with ``wait4`` (its CPU time).
* :class:`Pacer` spaces out events at a fixed rate for a Python load generator.
* :func:`mysql_errno`, :data:`ER_NO_SUCH_TABLE`: how a load generator tells that the cutover renamed
  its table away.

It imports only the standard library, and neither ``bench`` nor ``drill``: both import it, and
neither imports the other.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ER_NO_SUCH_TABLE = 1146  # what a write gets once the cutover has renamed its table away

RE_TOTAL = re.compile(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec")
# "[ 3s ] thds: 4 tps: 1234.00 qps: ... lat (ms,95%): 1.23 err/s: 0.00 reconn/s: 0.00"
RE_INTERVAL = re.compile(
    r"\[\s*(\d+)s\s*\]\s*thds:\s*\d+\s+tps:\s*([\d.]+).*?lat \(ms,(\d+)%\):\s*([\d.]+)\s+err/s:\s*([\d.]+)"
)
RE_INTERVAL_TPS = re.compile(r"\[\s*(\d+)s\s*\].*?tps:\s*([\d.]+)")


class LoadError(RuntimeError):
    """The write load could not be set up or read (sysbench prepare failed, it printed no report)."""


def mysql_errno(exc: BaseException) -> int:
    """The server's error number of a PyMySQL error (0 when it carries none)."""
    return int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else 0


# --- the sbtest table ---------------------------------------------------------------------------


def create_sbtest_sql(table: str) -> str:
    """The sysbench ``sbtest`` table definition."""
    return (
        f"CREATE TABLE `{table}` ("
        "id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "k INT NOT NULL DEFAULT 0, "
        "c CHAR(120) NOT NULL DEFAULT '', "
        "pad CHAR(60) NOT NULL DEFAULT '', "
        "KEY k_1 (k)) ENGINE=InnoDB"
    )


def fill_sbtest_sql(table: str, rows: int) -> str:
    """Fill ``table`` with ``rows`` deterministic rows; the same statement gives the same data anywhere."""
    return (
        f"INSERT INTO `{table}` (id, k, c, pad) "
        f"SELECT seq, (seq * 7919) % {rows} + 1, "
        "LEFT(CONCAT(SHA2(seq, 256), SHA2(seq + 1000000007, 256)), 119), "
        "LEFT(SHA2(seq * 3, 256), 59) "
        f"FROM seq_1_to_{rows}"
    )


# --- sysbench -----------------------------------------------------------------------------------


def ensure_sysbench() -> tuple[str | None, str]:
    """Path of sysbench, installing Debian's package when missing; (None, why) when impossible."""
    found = shutil.which("sysbench")
    if found:
        return found, "sysbench"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None, "sysbench is not installed and apt-get cannot be run here"
    print("sysbench not found: installing it with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "sysbench"]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(cmd)}` timed out"
        if proc.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}"
    found = shutil.which("sysbench")
    return (found, "sysbench (installed by apt-get)") if found else (None, "sysbench still missing")


def sysbench_cmd(
    binary: str,
    socket: str,
    db: str,
    rows: int,
    seconds: int,
    *,
    threads: int = 1,
    rate: int = 0,
    tables: int = 1,
    seed: int = 0,
    percentile: int = 95,
    report_interval: int = 1,
    ignore_errors: str = "",
) -> list[str]:
    """``sysbench oltp_write_only`` on ``tables`` sbtest tables of ``db``, as root over the unix socket.

    ``seconds`` 0 runs until stopped (or until a statement fails). ``rate`` 0 is unthrottled (each
    thread writes as fast as the source lets it). ``seed`` 0 lets sysbench seed from the clock; any
    other value makes two runs draw the same keys and values. ``percentile`` 100 makes every interval
    line report that interval's maximum latency (95 is sysbench's own default). ``report_interval`` 0
    prints no interval lines. Append ``prepare`` or ``run``.
    """
    cmd = [
        binary,
        "oltp_write_only",
        f"--mysql-socket={socket}",
        "--mysql-user=root",
        f"--mysql-db={db}",
        f"--tables={tables}",
        f"--table-size={rows}",
        f"--threads={threads}",
        f"--rate={rate}",
        f"--time={seconds}",
        f"--report-interval={report_interval}",
        f"--percentile={percentile}",
    ]
    if seed:
        cmd.append(f"--rand-seed={seed}")
    if ignore_errors:
        cmd.append(f"--mysql-ignore-errors={ignore_errors}")
    return cmd


def sysbench_prepare(cmd: list[str], what: str) -> None:
    """Run ``cmd prepare`` (creates and fills the tables); :class:`LoadError` when it fails."""
    prep = subprocess.run([*cmd, "prepare"], capture_output=True, text=True, timeout=600, check=False)
    if prep.returncode != 0:
        raise LoadError(f"{what}: sysbench prepare failed:\n{(prep.stdout + prep.stderr)[-1500:]}")


def parse_sysbench(output: str, *, require_total: bool = True) -> dict[str, Any]:
    """Totals and per-interval figures from sysbench's output.

    ``intervals`` holds one ``[second, tps, latency_ms, errors_per_s]`` per report line, the latency
    being the ``--percentile`` of that interval (its maximum with ``--percentile=100``). A run that
    sysbench aborted (a thread hit an error it does not ignore) has no final report: pass
    ``require_total=False`` to read what it printed before.
    """
    total = RE_TOTAL.search(output)
    if total is None and require_total:
        raise LoadError(f"no transactions line in sysbench's output:\n{output[-1500:]}")
    intervals = [
        [int(m.group(1)), float(m.group(2)), float(m.group(4)), float(m.group(5))]
        for m in RE_INTERVAL.finditer(output)
    ]
    percentile = next((int(m.group(3)) for m in RE_INTERVAL.finditer(output)), None)
    return {
        "transactions": int(total.group(1)) if total else None,
        "tps": round(float(total.group(2)), 1) if total else None,
        "tps_per_second": [float(m.group(2)) for m in RE_INTERVAL_TPS.finditer(output)],
        "intervals": intervals,
        "latency_percentile": percentile,
    }


def reap(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage] | None:
    """(exit code, its own resource usage) once ``proc`` has exited, reaping it with ``wait4``; None
    while it runs. ``Popen.wait`` would lose the usage, and ``RUSAGE_CHILDREN`` is over every child."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # so Popen does not try to reap it again
    return code, usage


@dataclass
class SysbenchRun:
    """``cmd run`` in the background, its output in ``log_path``; reaped with ``wait4`` so that its
    CPU time comes back with its exit status (who used the cores during a load matters here).

    ``new_session``: start it in a session of its own, so that a Ctrl-C on the terminal reaches only
    the caller, which then stops it (:meth:`kill`, :meth:`terminate`).
    """

    cmd: list[str]
    log_path: Path
    new_session: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.time() just before the process was started
    ended_at: float = 0.0
    returncode: int | None = None
    cpu_s: float = 0.0

    def start(self) -> SysbenchRun:
        """Start ``sysbench ... run``."""
        with self.log_path.open("wb") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                [*self.cmd, "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        return self

    def poll(self) -> int | None:
        """The exit code once it has exited (reaping it, noting its CPU time), else None."""
        if self.returncode is not None or self.proc is None:
            return self.returncode
        reaped = reap(self.proc)
        if reaped is None:
            return None
        self.ended_at = time.time()
        self.returncode, usage = reaped
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return self.returncode

    def kill(self) -> None:
        """SIGKILL it if it still runs, and reap it."""
        if self.poll() is None and self.proc is not None:
            self.proc.kill()
            while self.poll() is None:
                time.sleep(0.005)

    def terminate(self, timeout_s: float = 10.0) -> bool:
        """SIGTERM it if it still runs, SIGKILL it if it has not exited ``timeout_s`` later, and reap
        it. True when it was still running (stopped here), False when it had ended on its own."""
        if self.poll() is not None or self.proc is None:
            return False
        self.proc.terminate()
        deadline = time.monotonic() + timeout_s
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                break
            time.sleep(0.005)
        return True

    def output(self) -> str:
        """What it printed so far."""
        return self.log_path.read_text(errors="replace")


# --- pacing -------------------------------------------------------------------------------------


@dataclass
class Pacer:
    """Spaces events ``1/rate`` seconds apart (``rate`` 0: no pause at all).

    A late event does not earn a burst of catch-up events beyond one second's worth: a pause of
    the generator (a lock wait, a stall of the machine) must not turn into a spike the load never
    had.
    """

    rate: float
    stop: threading.Event = field(default_factory=threading.Event)
    _due: float = field(default=0.0, init=False)

    def wait(self) -> bool:
        """Sleep until the next event is due; False once :attr:`stop` is set."""
        if self.rate <= 0:
            return not self.stop.is_set()
        now = time.monotonic()
        # The first event is due now; later ones one interval after the previous one's due time.
        self._due = now if not self._due else max(self._due + 1.0 / self.rate, now - 1.0)
        return not self.stop.wait(max(0.0, self._due - now))
