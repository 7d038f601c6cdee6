"""What every part of the drill shares: the processes it owns and the state of the drill as a whole."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias

import pymysql
import pymysql.cursors
from loadkit import LoadError, SysbenchRun

from tablemover.local.mariadb import LocalPair

if TYPE_CHECKING:  # the load's writers register with Children, and drill.load imports this module
    from drill.load import AckedWrites, PyLoad
    from drill.read_replica import ReadReplica
    from drill.replica import TargetReplica

# Random kills land uniformly in [0, expected run time). Until the drill has timed a run (round 1
# reaches the cutover with nothing disturbing it before), these bounds stand in.
DEFAULT_RUN_S = 4.0
DEFAULT_RESTART_S = 3.0
DEFAULT_ROLLBACK_S = 2.0  # expected ask -> ROLLED_BACK until the drill has timed one

Conn: TypeAlias = "pymysql.connections.Connection[Any]"


class DrillError(LoadError):
    """The drill itself could not do something (set up a round, start the load). A
    :class:`LoadError` of the shared load code (sysbench prepare failed) is one as well: the drill
    catches :class:`LoadError`."""


# --- processes the drill owns -------------------------------------------------------------------


class Children:
    """Every process and load thread the drill started, so that an interrupt stops exactly those."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sysbench: list[SysbenchRun] = []
        self.loads: list[PyLoad | AckedWrites] = []

    def spawn(
        self, cmd: Sequence[str], log: IO[bytes], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session (a Ctrl-C on the terminal reaches only the drill, which
        then stops it), output to ``log``."""
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        """Forget processes that have exited."""
        self.procs = [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        """SIGKILL every process still running and stop every load thread."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self.procs.clear()
        for run in self.sysbench:
            run.kill()
        self.sysbench.clear()
        for load in self.loads:
            load.stop()
        self.loads.clear()


# --- the drill as a whole -----------------------------------------------------------------------


@dataclass
class Drill:
    """What every round shares."""

    pair: LocalPair
    workdir: Path
    children: Children
    rows: int
    rate: int
    seed: int
    sysbench: str | None
    pt_table_sync: str | None
    # Extra [source]/[target] keys of every round's config: --tls's verify_identity and certificates.
    server_keys: dict[str, str] = field(default_factory=dict)
    # [move] keys of every round's config over its kind's (--copy-threads N: copy_threads = N).
    move_keys: dict[str, Any] = field(default_factory=dict)
    full_runs: list[float] = field(default_factory=list)
    restart_runs: list[float] = field(default_factory=list)
    rollback_runs: list[float] = field(default_factory=list)  # rollback asked -> daemon exited 0
    # The target's replica, once a replica round started it (drill.replica); stopped with the pair.
    replica: TargetReplica | None = None
    # The source's replica the read-replica rounds read from (drill.read_replica); stopped likewise.
    read_replica: ReadReplica | None = None

    def expected_run_s(self) -> float:
        """Expected duration of an undisturbed first run (timed ones, else a bound)."""
        return 1.1 * statistics.median(self.full_runs) if self.full_runs else DEFAULT_RUN_S

    def expected_restart_s(self) -> float:
        """Expected duration of a restart after a kill."""
        return statistics.median(self.restart_runs) if self.restart_runs else DEFAULT_RESTART_S

    def expected_rollback_s(self) -> float:
        """Expected time from an accepted rollback request to ROLLED_BACK (the daemon's exit)."""
        return 1.1 * statistics.median(self.rollback_runs) if self.rollback_runs else DEFAULT_ROLLBACK_S
