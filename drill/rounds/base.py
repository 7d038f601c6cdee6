"""What every round kind shares: the :class:`RoundKind` interface, a round's state, and the round
itself (:func:`run_round`: set up, load, kill, restart, check), which calls its kind at the points
where kinds differ."""

from __future__ import annotations

import random
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from drill.checks import RoundMarks, StateRules, hook_problems, transition_problems
from drill.common import Drill, DrillError
from drill.daemon import RUN_TIMEOUT_S, Daemon, RunRecord, round_runs
from drill.db import binlog_position, count_renames, scan_binlog, transitions
from drill.kills import Kill, plan_kills
from drill.load import EXTRA_TABLE_RATE, SYSBENCH_TABLES, PyLoad, setup_round, stop_sysbench
from drill.window import WindowRun
from tablemover.local.mariadb import pair_config


@dataclass(frozen=True)
class Slot:
    """A round's place in the drill, from which the registry picks its kind: its number (from 1),
    and its index among the window rounds (from 1; None when ``--window-every`` does not make it
    one)."""

    number: int
    window: int | None


@dataclass(frozen=True)
class HookLogs:
    """Where the round's hooks append: on-success and on-rollback their attempt number,
    on-before-rollback the state it ran in."""

    success: Path
    before_rollback: Path
    rollback: Path

    @staticmethod
    def read(path: Path) -> list[str]:
        """The lines a hook appended (none when it never ran)."""
        return path.read_text().split() if path.exists() else []


def write_hooks(directory: Path, logs: HookLogs, window: bool) -> None:
    """An on-success hook that appends its attempt number to ``logs.success``; with ``window`` also
    on-before-rollback (appends its state) and on-rollback (appends its attempt number)."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = {"on-success": f'echo "$TABLEMOVER_HOOK_ATTEMPT" >> "{logs.success}"'}
    if window:
        bodies["on-before-rollback"] = f'echo "$TABLEMOVER_STATE" >> "{logs.before_rollback}"'
        bodies["on-rollback"] = f'echo "$TABLEMOVER_HOOK_ATTEMPT" >> "{logs.rollback}"'
    for name, body in bodies.items():
        hook = directory / name
        hook.write_text(f"#!/bin/sh\n{body}\n")
        hook.chmod(0o755)


def write_config(
    drill: Drill, rdir: Path, config: Path, move: dict[str, Any], throttle: dict[str, Any]
) -> None:
    """The round's config file: the pair as source and target, ``move`` and ``throttle``."""
    keys = drill.server_keys
    config.write_text(pair_config(drill.pair, rdir, move, source=keys, target=keys, throttle=throttle))


@dataclass
class Round:
    """One round as it runs: its plan, its schemas and files, and what it has found so far."""

    drill: Drill
    number: int
    kind: RoundKind
    kills: list[Kill]  # the forward move's
    later_kills: list[Kill]  # after the cutover (window rounds)
    tables: list[str]
    rdir: Path
    config: Path
    hooks: HookLogs
    marks: RoundMarks
    result: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    # How each load ended: (name, (how, whether that was expected)).
    ended: list[tuple[str, tuple[str, bool]]] = field(default_factory=list)
    # The forward data checks a rollback round ran at WINDOW_OPEN (the others run them at the end).
    forward: dict[str, Any] | None = None
    wrun: WindowRun | None = None  # what the window phase did (window rounds that reached it)
    move: dict[str, Any] = field(default_factory=dict)  # the config's [move]
    throttle: dict[str, Any] = field(default_factory=dict)  # the config's [throttle]

    def rewrite_config(self, **move_keys: Any) -> None:
        """Write the round's config again with ``move_keys`` over its [move] (for the next run:
        every run reads the file when it starts)."""
        write_config(self.drill, self.rdir, self.config, {**self.move, **move_keys}, self.throttle)

    @property
    def db(self) -> str:
        """The source schema (and the move's name)."""
        return f"drill_{self.number}"

    @property
    def dst(self) -> str:
        """The target schema."""
        return f"drill_{self.number}_dst"


@dataclass(frozen=True)
class SourceRenames:
    """What the source binlog holds of a round (all -1 when it could not be read)."""

    renames: int  # RENAME statements naming the round's tables
    away: int  # of the first table to its ``_<t>_moved`` name (the cutover)
    back: int  # of ``_<t>_moved`` back to its name (a rollback's restore)
    commits: int  # row transactions committed since the round's load began


class RoundKind(ABC):
    """One kind of round: when it runs, what it plans and configures beyond the forward move, what it
    does once the forward runs are over, and what its checks expect.

    A new kind is a module of ``drill/rounds/`` holding a subclass and an instance of it, and one
    line in the registry (``drill/rounds/__init__.py``)."""

    name: str  # the registry's name for it
    label: str = ""  # the JSON's "window" and the table's window column ("" shows as -)
    rules: StateRules  # what its transition rows must hold

    @abstractmethod
    def takes(self, slot: Slot) -> bool:
        """Whether this kind runs the round at ``slot`` (the first kind in the registry that takes a
        slot runs it)."""

    def forward_kills(self, slot: Slot, targeted_index: int, rng: random.Random) -> list[Kill]:
        """The kills of the forward move: :func:`drill.kills.plan_kills` (``targeted_index``: how
        many rounds before this one took a targeted kill)."""
        return plan_kills(slot.number, targeted_index, rng)

    def plan(self, slot: Slot, rng: random.Random) -> list[Kill]:
        """The kills after the cutover (none here). Called once for each round this kind takes, after
        the forward kills and the table count were drawn from ``rng``."""
        return []

    def move_keys(self) -> dict[str, Any]:
        """Keys of the round's ``[move]`` beyond its schemas, tables and hooks."""
        return {}

    def throttle_keys(self, drill: Drill) -> dict[str, Any]:
        """Keys of the round's ``[throttle]`` (none here). Called once a round, before its config
        is written: a kind may start what the keys name (the replica rounds' target replica)."""
        return {}

    def rollback_hooks(self) -> bool:
        """Whether the round installs on-before-rollback and on-rollback hooks too."""
        return False

    def forward_runs(self, rnd: Round) -> Daemon | None:
        """The killed runs and the clean restarts (appended to ``rnd.runs``); the daemon still
        running when the kind takes over from it (None here: the runs end when one exits 0)."""
        runs, live = round_runs(rnd.drill, rnd.kills, rnd.config, rnd.rdir)
        rnd.runs.extend(runs)
        return live

    def after_runs(self, rnd: Round, live: Daemon | None) -> None:
        """What the round does once the forward runs are over and the source load has stopped
        (nothing here)."""
        return None  # a hook with a default, not an abstract method

    @abstractmethod
    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """The checks of the moved data; results into ``out``, failures to ``rnd.failures``."""

    @abstractmethod
    def binlog_checks(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """What the binlogs must hold (``source``: what the source's holds of the round)."""

    @abstractmethod
    def hook_checks(self, rnd: Round, trans: list[tuple[str, int]], out: dict[str, Any]) -> None:
        """The checks of the hooks beyond on-success (``trans``: the transition rows, with the hook
        attempts they recorded)."""


def check_no_rollback_hook(rnd: Round) -> None:
    """The check of a round that does not roll back: neither rollback hook ran."""
    if HookLogs.read(rnd.hooks.rollback) or HookLogs.read(rnd.hooks.before_rollback):
        rnd.failures.append("a rollback hook ran in a round that did not roll back")


def run_round(
    drill: Drill, kind: RoundKind, number: int, kills: list[Kill], later_kills: list[Kill], table_count: int
) -> dict[str, Any]:
    """Set up, load, kill, restart and check one round; its JSON record."""
    started = time.monotonic()
    pair = drill.pair
    db, dst = f"drill_{number}", f"drill_{number}_dst"
    tables = [f"sbtest{i}" for i in range(1, table_count + 1)]
    rdir = drill.workdir / f"round-{number}"
    rdir.mkdir(parents=True)
    result: dict[str, Any] = {"round": number, "tables": tables, "window": kind.label}

    since = binlog_position(pair.source.socket)
    target_since = binlog_position(pair.target.socket)
    sysbench = setup_round(drill, db, tables, rdir)
    load_from = binlog_position(pair.source.socket)

    hooks = HookLogs(rdir / "hook.log", rdir / "before-rollback-hook.log", rdir / "rollback-hook.log")
    write_hooks(rdir / "hooks", hooks, kind.rollback_hooks())
    move: dict[str, Any] = {
        "name": db,
        "database": db,
        "target_database": dst,
        "tables": tables,
        "hooks_dir": str(rdir / "hooks"),
    }
    move.update(kind.move_keys())
    move.update(drill.move_keys)  # the command line's (--copy-threads) over the kind's
    throttle = kind.throttle_keys(drill)
    config = rdir / "move.toml"
    write_config(drill, rdir, config, move, throttle)
    rnd = Round(
        drill,
        number,
        kind,
        kills,
        later_kills,
        tables,
        rdir,
        config,
        hooks,
        RoundMarks(since, load_from, target_since),
        result,
        move=move,
        throttle=throttle,
    )

    pyload = None
    py_tables = tables if sysbench is None else tables[SYSBENCH_TABLES:]
    if py_tables:
        rate = drill.rate if sysbench is None else EXTRA_TABLE_RATE
        pyload = PyLoad(pair.source.socket, db, py_tables, drill.rows, rate, 2, drill.seed * 100 + number)
        pyload.start(drill.children)
    if sysbench is not None:
        sysbench.start()
    time.sleep(0.2)
    if sysbench is not None and sysbench.poll() is not None:
        raise DrillError(f"sysbench exited at once: {sysbench.output()[-1500:]}")

    live = kind.forward_runs(rnd)

    # The source load ends at the cutover (1146); in a window round it is over by WINDOW_OPEN.
    loads: dict[str, Any] = {}
    if sysbench is not None:
        rnd.ended.append(("sysbench", stop_sysbench(sysbench)))
    if pyload is not None:
        rnd.ended.append(("python", pyload.stop()))

    kind.after_runs(rnd, live)
    runs, failures, warnings = rnd.runs, rnd.failures, rnd.warnings
    for name, (how, expected) in rnd.ended:
        loads[name] = how
        if not expected:
            warnings.append(f"{name} load: {how}")
    result["load"] = loads
    if pyload is not None:
        result["python_load_commits"] = pyload.commits
    final = runs[-1]

    for run in runs:
        if run.timed_out:
            failures.append(f"a run did not finish within {RUN_TIMEOUT_S:.0f} s and was killed")
        elif run.rc not in (0, -signal.SIGKILL):
            (failures if run.rc in (2, 3) else warnings).append(
                f"run {runs.index(run) + 1} exited {run.rc}: {'; '.join(run.errors[:2])}"
            )
    for kill in kills + later_kills:
        if not kill.happened:
            warnings.append(f"planned kill {kill.label()} did not happen")
    if final.rc != 0:
        failures.append(f"the last run exited {final.rc} after {len(runs) - 1} restarts")

    checks_from = time.monotonic()
    result.update(check_round(rnd))
    result["checks_s"] = round(time.monotonic() - checks_from, 1)
    result.update(
        {
            "kill_points": " + ".join(k.label() for k in kills)
            + (" | " + " + ".join(k.label() for k in later_kills) if later_kills else ""),
            "restarts": len(runs) - 1,
            "runs": [r.as_json() for r in runs],
            "kills": [k.as_json() for k in kills],
            "window_kills": [k.as_json() for k in later_kills],
            "failures": failures,
            "warnings": warnings,
            "result": "FAIL" if failures else "PASS",
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    return result


def check_round(rnd: Round) -> dict[str, Any]:
    """Every check of a finished round; appends what failed to ``rnd.failures``."""
    pair = rnd.drill.pair
    db, dst, tables, failures = rnd.db, rnd.dst, rnd.tables, rnd.failures
    out: dict[str, Any] = {}

    rnd.kind.data_checks(rnd, out)

    try:
        statements, commits = scan_binlog(pair.source.socket, db, rnd.marks.since, rnd.marks.load_from)
        source = SourceRenames(
            len(statements),
            count_renames(statements, db, tables[0], f"_{tables[0]}_moved"),
            count_renames(statements, db, f"_{tables[0]}_moved", tables[0]),
            commits,
        )
    except pymysql.err.MySQLError as exc:
        failures.append(f"binlog scan: {exc}")
        source = SourceRenames(-1, -1, -1, -1)
    rnd.kind.binlog_checks(rnd, out, source)

    try:
        trans = transitions(pair, dst)
    except pymysql.err.MySQLError as exc:
        failures.append(f"checkpoint transitions: {exc}")
        trans = []
    states = [s for s, _ in trans]
    out["transitions"] = states
    problems = transition_problems(states, rnd.kind.rules) if states else ["no transition rows"]
    out["transition_problems"] = problems
    failures.extend(f"checkpoint: {p} ({' '.join(states)})" for p in problems)

    out["hook_attempts"] = attempts = [int(x) for x in HookLogs.read(rnd.hooks.success)]
    failures.extend(
        hook_problems("on-success", attempts, [a for s, a in trans if s == "HOOK_FIRED"], "HOOK_FIRED")
    )
    rnd.kind.hook_checks(rnd, trans, out)
    return out
