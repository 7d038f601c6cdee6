"""``tablemover run`` processes: started, watched, SIGKILLed, restarted; ``tablemover verify``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drill.common import Children, Drill
from drill.kills import CUTOVER_POINTS, WRITER_POINTS, Kill

MAX_RESTARTS = 5
RUN_TIMEOUT_S = 120.0
VERIFY_TIMEOUT_S = 120.0


@dataclass
class RunRecord:
    """One ``tablemover run`` process."""

    fault: str
    kill_after_s: float | None
    rc: int | None = None
    wall_s: float = 0.0
    killed_by_drill: bool = False
    timed_out: bool = False
    states: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def reached_window(self) -> bool:
        """Whether this run entered WINDOW_OPEN."""
        return "WINDOW_OPEN" in self.states

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "fault": self.fault or None,
            "kill_after_s": None if self.kill_after_s is None else round(self.kill_after_s, 3),
            "rc": self.rc,
            "wall_s": round(self.wall_s, 3),
            "killed_by_drill": self.killed_by_drill,
            "timed_out": self.timed_out,
            "states": self.states,
            "errors": self.errors,
        }


def daemon_env(fault: str) -> dict[str, str]:
    """The environment without any TABLEMOVER_* variable (config overrides, faults), plus ``fault``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLEMOVER_")}
    if fault:
        env["TABLEMOVER_FAULTS"] = fault
    return env


def parse_log(record: RunRecord, path: Path) -> None:
    """Fill ``record.states`` and ``record.errors`` from a JSON log file."""
    for raw in path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            if "Traceback" in raw or raw.startswith(("Error", "error")):
                record.errors.append(raw[:300])
            continue
        if not isinstance(line, dict):
            continue
        if line.get("msg") == "state changed":
            record.states.append(str(line.get("state")))
        elif str(line.get("level", "")).lower() in ("error", "critical"):
            detail = {k: v for k, v in line.items() if k not in ("ts", "level", "msg")}
            record.errors.append(f"{line.get('msg')} {json.dumps(detail)[:400]}")


class LogTail:
    """A daemon's JSON log as it grows: each call of :meth:`read_new` returns the lines appended
    since the last one (a line still being written waits for its newline)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        """The JSON object lines appended since the last call (none while the file does not exist)."""
        try:
            with self.path.open("rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        found = []
        for raw in lines:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not a JSON line (a traceback's text): the messages are in the others
            if isinstance(line, dict):
                found.append(line)
        return found


class Daemon:
    """One ``tablemover run`` process the drill watches without blocking: its exit, and the states and
    messages its JSON log has reported so far."""

    def __init__(self, children: Children, config: Path, log_path: Path, fault: str = "") -> None:
        self.children = children
        self.log_path = log_path
        self.record = RunRecord(fault, None, log=str(log_path))
        self.states: list[str] = []
        self.messages: set[str] = set()
        self.lines: list[dict[str, Any]] = []  # every JSON line so far, for reads of their fields
        self._tail = LogTail(log_path)
        cmd = [sys.executable, "-m", "tablemover", "--log-format", "json", "run", "-c", str(config)]
        with log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = children.spawn(cmd, log, env=daemon_env(fault))
        self.ended = 0.0

    def elapsed(self) -> float:
        """Seconds since it started."""
        return time.monotonic() - self.started

    def poll(self, wait_s: float = 0.0) -> int | None:
        """Its exit code once it has exited (waiting up to ``wait_s`` for that), else None."""
        if self.record.rc is None:
            try:
                rc = self.proc.wait(timeout=wait_s) if wait_s > 0 else self.proc.poll()
            except subprocess.TimeoutExpired:
                rc = None
            if rc is not None:
                self.ended = time.monotonic()
                self.record.rc = rc
                self.record.wall_s = self.ended - self.started
        return self.record.rc

    def kill(self, *, timed_out: bool = False) -> None:
        """SIGKILL it (a planned kill, or ``timed_out``) unless it has exited already."""
        if self.poll() is None:
            self.proc.kill()
            self.poll(wait_s=30)
            self.record.killed_by_drill = not timed_out
            self.record.timed_out = timed_out

    def _scan(self) -> None:
        for line in self._tail.read_new():
            msg = str(line.get("msg"))
            self.messages.add(msg)
            self.lines.append(line)
            if msg == "state changed":
                self.states.append(str(line.get("state")))

    def reached(self, state: str) -> bool:
        """Whether its log has reported entering ``state``."""
        self._scan()
        return state in self.states

    def said(self, *messages: str) -> bool:
        """Whether its log holds one of ``messages``."""
        self._scan()
        return not self.messages.isdisjoint(messages)

    def logged(self, msg_prefix: str, **field_prefixes: str) -> bool:
        """Whether its log holds a line whose message starts with ``msg_prefix`` and whose fields
        start with the given texts (``reason="target replica ..."``)."""
        self._scan()
        return any(
            str(line.get("msg")).startswith(msg_prefix)
            and all(str(line.get(k, "")).startswith(v) for k, v in field_prefixes.items())
            for line in self.lines
        )

    def finish(self) -> RunRecord:
        """Its record, once it has exited (waits for that), with the states and errors of its log."""
        if self.poll() is None:
            self.poll(wait_s=RUN_TIMEOUT_S)
        if self.poll() is None:
            self.kill(timed_out=True)
        self.children.reap()
        parse_log(self.record, self.log_path)
        return self.record


def run_daemon(
    children: Children,
    config: Path,
    log_path: Path,
    fault: str = "",
    kill_after_s: float | None = None,
    *,
    until_window: bool = False,
) -> tuple[RunRecord, Daemon | None]:
    """Run ``tablemover run`` once: with ``fault`` armed, or SIGKILLed after ``kill_after_s``.

    With ``until_window`` it returns as soon as the daemon reports WINDOW_OPEN: (its record, not
    finished, and the daemon, still running), which the window phase then takes over; otherwise
    (the record, None) once it has exited.
    """
    daemon = Daemon(children, config, log_path, fault)
    daemon.record.kill_after_s = kill_after_s
    limit = kill_after_s if kill_after_s is not None else RUN_TIMEOUT_S
    while daemon.poll(wait_s=min(0.02, max(limit - daemon.elapsed(), 0.001))) is None:
        if until_window and daemon.reached("WINDOW_OPEN") and daemon.poll() is None:
            return daemon.record, daemon
        if daemon.elapsed() >= limit:
            daemon.kill(timed_out=kill_after_s is None)
    return daemon.finish(), None


def tablemover_verify(config: Path) -> tuple[int, str]:
    """``tablemover verify``'s exit code and output."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tablemover", "verify", "-c", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(""),
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, f"verify did not finish within {VERIFY_TIMEOUT_S:.0f} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def round_runs(
    drill: Drill,
    kills: list[Kill],
    config: Path,
    rdir: Path,
    *,
    until_window: bool = False,
    window_point: Kill | None = None,
) -> tuple[list[RunRecord], Daemon | None]:
    """The killed runs, then clean restarts until one exits 0 (or MAX_RESTARTS, or a refusal).

    In a window round (``until_window``) the runs end at WINDOW_OPEN instead of DONE: the daemon that
    got there is returned still running (None when it died there, or never got there).
    ``window_point``'s fault is armed in every run until it fires.
    """
    runs: list[RunRecord] = []
    live: Daemon | None = None

    def arm(fault: str) -> str:
        if fault.split(":")[0] in WRITER_POINTS:
            # Unreached by the forward move, a writer.* fault fires in the reverse feed's writer:
            # never next to the window point, whose kill could then not be told from it.
            return fault
        extra = window_point.point if window_point is not None and not window_point.happened else ""
        return ",".join(p for p in (fault, extra) if p)

    def run(fault: str, kill_after_s: float | None) -> RunRecord:
        nonlocal live
        log = rdir / f"run-{len(runs) + 1}.log"
        rec, live = run_daemon(
            drill.children, config, log, arm(fault), kill_after_s, until_window=until_window
        )
        if live is None:
            runs.append(rec)
            if window_point is not None and rec.reached_window and died_of_fault(rec):
                window_point.happened = True  # killed at WINDOW_OPEN: the only window point before it
        return rec

    def finished() -> bool:
        return live is not None or (
            bool(runs) and (runs[-1].rc == 0 or (until_window and runs[-1].reached_window))
        )

    for i, kill in enumerate(kills):
        if finished():
            break  # the move is done (or in its window): a further kill has nothing left to hit
        kill.run_attempted = True
        if kill.point:
            rec = run(kill.point, None)
            kill.happened = died_of_fault(rec) and not rec.reached_window
        else:
            kill.delay_s = kill.fraction * (drill.expected_run_s() if i == 0 else drill.expected_restart_s())
            rec = run("", kill.delay_s)
            kill.happened = rec.killed_by_drill
        if not kill.happened and (live is not None or rec.reached_window):
            kill.missed = "window opened first"
        if i == 0:
            if live is not None:
                drill.full_runs.append(live.elapsed())  # undisturbed until the window opened
            elif rec.rc == 0 or (kill.happened and kill.point in CUTOVER_POINTS):
                drill.full_runs.append(rec.wall_s)  # undisturbed until the cutover (or the end)
        if rec.rc in (2, 3):
            return runs, None
    restarts = 0
    while not finished() and restarts < MAX_RESTARTS:
        restarts += 1
        rec = run("", None)
        if rec.rc == 0:
            drill.restart_runs.append(rec.wall_s)
        if rec.rc in (2, 3):
            break
    return runs, live


def died_of_fault(rec: RunRecord) -> bool:
    """SIGKILLed by one of its own fault points (not by the drill)."""
    return rec.rc == -signal.SIGKILL and not rec.killed_by_drill and not rec.timed_out
