"""The rollback window phase of a round: the target written, kills, restarts, rollback requests."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadkit import SysbenchRun, sysbench_cmd

from drill.checks import dump_diff
from drill.common import Drill
from drill.daemon import MAX_RESTARTS, Daemon, RunRecord, daemon_env, died_of_fault
from drill.db import BinlogPos, binlog_position, move_state
from drill.kills import Kill
from drill.load import EXTRA_TABLE_RATE, SYSBENCH_TABLES, AckedWrites, PyLoad, stop_sysbench

WINDOW_WRITE_S = 1.0  # target writes before the rollback is asked for (or stopped, elapse rounds)
WINDOW_RATE_SHARE = 2  # the target load runs at --rate / this (sysbench), like the source's mix
ACKED_RATE = 200  # acknowledged-write transactions/s on the target
MIN_ACKED = 50  # the rollback is asked for once at least this many target writes were acknowledged
WINDOW_PHASE_TIMEOUT_S = 300.0
ASK_RETRY_S = 0.3
TARGET_LOAD_ID_BASE = 1_500_000_000  # new keys of the Python load on the target (source: 1e9)


@dataclass
class WindowPlan:
    """A window round's kind and its kills after the cutover."""

    kind: str  # "rollback" or "elapse"
    kills: list[Kill]  # at most one fault point (armed until it fires) and one random instant

    @property
    def point(self) -> Kill | None:
        """The fault-point kill, if any."""
        return next((k for k in self.kills if k.point), None)

    @property
    def random(self) -> Kill | None:
        """The random-instant kill, if any."""
        return next((k for k in self.kills if not k.point), None)


@dataclass
class TargetLoad:
    """The application writing to the target during the window: sysbench on sbtest1..2 and the
    Python generator on the rest (or on everything without sysbench), and the acknowledged writes."""

    sysbench: SysbenchRun | None
    pyload: PyLoad | None
    acked: AckedWrites
    ended: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @classmethod
    def start(cls, drill: Drill, dst: str, tables: list[str], rdir: Path, seed: int) -> TargetLoad:
        """Start every writer on the target's schema ``dst``."""
        socket = drill.pair.target.socket
        share = max(drill.rate // WINDOW_RATE_SHARE, 1)
        sysbench = None
        py_tables = tables
        if drill.sysbench is not None:
            cmd = sysbench_cmd(
                drill.sysbench,
                socket,
                dst,
                drill.rows,
                0,
                threads=2,
                rate=share,
                tables=SYSBENCH_TABLES,
                report_interval=0,
            )
            sysbench = SysbenchRun(cmd, rdir / "sysbench-target.log", new_session=True)
            drill.children.sysbench.append(sysbench)
            sysbench.start()
            py_tables = tables[SYSBENCH_TABLES:]
        pyload = None
        if py_tables:
            rate = share if sysbench is None else EXTRA_TABLE_RATE
            pyload = PyLoad(
                socket,
                dst,
                py_tables,
                drill.rows,
                rate,
                2,
                seed,
                id_base=TARGET_LOAD_ID_BASE,
                renamed_by="the rollback",
            )
            pyload.start(drill.children)
        acked = AckedWrites(socket, dst, tables, ACKED_RATE, seed)
        acked.start(drill.children)
        return cls(sysbench, pyload, acked)

    def stop(self) -> None:
        """Stop every writer (once), noting how each ended."""
        if self.ended:
            return
        if self.sysbench is not None:
            self.ended["sysbench"] = stop_sysbench(self.sysbench, "the rollback")
        if self.pyload is not None:
            self.ended["python"] = self.pyload.stop()
        self.ended["acked"] = self.acked.stop()


@dataclass
class WindowRun:
    """What the window phase of a round did."""

    kind: str
    target_from: BinlogPos = ("", 0)  # the target's binlog where its load began
    asks: int = 0  # accepted rollback requests (some by a run killed right after)
    ask_errors: list[str] = field(default_factory=list)  # refused by a run still alive (warnings)
    ask_lost: list[str] = field(default_factory=list)  # refused because its run was killed meanwhile
    caught_up_s: float | None = None  # elapse rounds: target writes stopped -> source caught up
    caught_up_state: str = ""  # the move's state right after the catch-up was seen
    load: TargetLoad | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        acked = self.load.acked if self.load is not None else None
        return {
            "kind": self.kind,
            "rollback_requests_accepted": self.asks,
            "rollback_request_errors": self.ask_errors[:5],
            "rollback_requests_lost_with_their_run": self.ask_lost[:5],
            "caught_up_s": None if self.caught_up_s is None else round(self.caught_up_s, 2),
            "caught_up_state": self.caught_up_state or None,
            "acked_writes": acked.acked if acked else 0,
            "target_load": {k: v[0] for k, v in self.load.ended.items()} if self.load else {},
        }


def source_caught_up(drill: Drill, db: str, dst: str, tables: list[str]) -> bool:
    """Whether every renamed source table equals its target table (the reverse feed caught up)."""
    return all(dump_diff(drill.pair, (db, f"_{t}_moved"), (dst, t)).equal for t in tables)


def ask_rollback(drill: Drill, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``tablemover rollback --no-wait`` in the background (it returns once the daemon took it)."""
    cmd = [sys.executable, "-m", "tablemover", "rollback", "-c", str(config), "--no-wait"]
    with log.open("wb") as out:
        return drill.children.spawn(cmd, out, env=daemon_env(""))


def window_phase(
    drill: Drill,
    plan: WindowPlan,
    config: Path,
    rdir: Path,
    schemas: tuple[str, str],
    tables: list[str],
    live: Daemon | None,
    runs: list[RunRecord],
    seed: int,
) -> WindowRun:
    """From WINDOW_OPEN to the end of the move: the target written, the planned kills, restarts until
    a run exits 0, and (rollback rounds) the rollback asked of every run that is in WINDOW_OPEN.

    ``live`` is the daemon that opened the window (None when it died there); every run's record is
    appended to ``runs``.
    """
    pair = drill.pair
    db, dst = schemas
    rollback = plan.kind == "rollback"
    point, rand = plan.point, plan.random
    for kill in plan.kills:
        kill.run_attempted = True
    out = WindowRun(plan.kind, target_from=binlog_position(pair.target.socket))
    out.load = load = TargetLoad.start(drill, dst, tables, rdir, seed)
    t0 = time.monotonic()
    write_until = t0 + WINDOW_WRITE_S
    # Killed at WINDOW_OPEN: the application writes to the target for a while with no daemon, and
    # the restarted reverse feed must pick all of that up.
    restart_at = t0 if live is not None else t0 + WINDOW_WRITE_S / 2
    kill_at = None
    if rand is not None:
        span = WINDOW_WRITE_S + (drill.expected_rollback_s() if rollback else 0.0)
        rand.delay_s = rand.fraction * span
        kill_at = t0 + rand.delay_s
    daemon = live
    asked: Daemon | None = None  # the run that accepted the rollback (a request dies with its run)
    asked_at: float | None = None  # when it accepted it (None: it resumed a rollback under way)
    ask: tuple[subprocess.Popen[bytes], Daemon, Path] | None = None
    next_ask = 0.0
    restarts = 0
    deadline = t0 + WINDOW_PHASE_TIMEOUT_S
    while True:
        now = time.monotonic()
        if not rollback and now >= write_until:
            load.stop()  # elapse rounds: the application stops writing well before the window closes
        if daemon is not None and daemon.poll() is not None:
            rec = daemon.finish()
            runs.append(rec)
            if (
                point is not None
                and not point.happened
                and point.point in rec.fault.split(",")
                and died_of_fault(rec)
            ):
                point.happened = True
            if rec.rc == 0:
                if asked is daemon and asked_at is not None:
                    drill.rollback_runs.append(daemon.ended - asked_at)
                break
            daemon = None
            if rec.rc in (2, 3):
                break
        if now > deadline:
            out.ask_errors.append(f"the window phase did not end within {WINDOW_PHASE_TIMEOUT_S:.0f} s")
            if daemon is not None:
                daemon.kill(timed_out=True)
                runs.append(daemon.finish())
            break
        if daemon is None:
            if restarts >= MAX_RESTARTS:
                break
            if now < restart_at:
                time.sleep(0.02)
                continue
            restarts += 1
            fault = point.point if point is not None and not point.happened else ""
            daemon = Daemon(drill.children, config, rdir / f"run-{len(runs) + 1}.log", fault)
            continue
        if rand is not None and kill_at is not None and not rand.happened and now >= kill_at:
            daemon.kill()
            rand.happened = True
            continue
        if ask is not None and ask[0].poll() is not None:
            proc, whom, log = ask
            ask = None
            if proc.returncode == 0:
                out.asks += 1
                if whom is daemon:
                    asked, asked_at = daemon, time.monotonic()
                # else: taken by a run that has died since; its successor is asked again if need be
            else:
                text = log.read_text(errors="replace").strip().replace("\n", " | ")
                # Refused by a run killed meanwhile: expected, its successor is asked.
                (out.ask_errors if whom is daemon else out.ask_lost).append(
                    f"exit {proc.returncode}: {text[-300:]}"
                )
                next_ask = now + ASK_RETRY_S
        if (
            rollback
            and ask is None
            and asked is not daemon
            and now >= max(write_until, next_ask)
            and (load.acked.acked >= MIN_ACKED or now >= write_until + 10)
            and daemon.said("rollback window open", "resuming move from checkpoint")
        ):
            if move_state(pair, dst) == "WINDOW_OPEN":
                log = rdir / f"rollback-{out.asks + len(out.ask_errors) + len(out.ask_lost) + 1}.log"
                ask = (ask_rollback(drill, config, log), daemon, log)
            else:
                asked, asked_at = daemon, None  # resumed a rollback already under way: nothing to ask
        if not rollback and load.ended and out.caught_up_s is None and not out.caught_up_state:
            if source_caught_up(drill, db, dst, tables):
                out.caught_up_state = move_state(pair, dst)
                if out.caught_up_state == "WINDOW_OPEN":
                    out.caught_up_s = time.monotonic() - write_until
                continue
            daemon.poll(wait_s=0.2)  # the reverse feed is still behind: look again shortly
            continue
        daemon.poll(wait_s=0.02)
    if ask is not None and ask[0].poll() is None:
        ask[0].kill()
        ask[0].wait()
    drill.children.reap()
    load.stop()
    return out
