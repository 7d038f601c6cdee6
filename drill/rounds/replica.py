"""Replica rounds (issue #27): a forward round whose move watches a GTID replica of the target
(``[throttle] target_replicas``), SIGKILLed twice where only a replica can hold it.

1. **Throttled.** The replica's SQL thread is stopped (before the daemon starts, or once it reports
   COPYING: alternately), the drill waits for the daemon's ``copy throttled`` line whose reason
   names the replica, waits a little more (no chunk starts meanwhile) and SIGKILLs it; then the SQL
   thread runs again.
2. **Waiting at the cutover.** The restart runs with ``postpone_cutover``: once it reports the
   postponement the SQL thread is stopped and the cutover released, so the drained rows cannot
   reach the replica; the daemon is SIGKILLed while it logs the cutover's wait for the replica
   (state DRAINED, on-success not run). The next restart, without the postponement, must wait
   again (the drill sees it say so with on-success still not run) and only then is the SQL thread
   started; it ends at DONE.

Beyond a forward round's checks, every replica round ends with the replica identical to the
target: its ``gtid_slave_pos`` covers the target's ``gtid_binlog_pos`` and every moved table has the
same rows (a SHA-256 of the ordered rows) on both. The kills are the drill's own, not
``TABLEMOVER_FAULTS`` points: their labels (``replica.throttled``, ``replica.cutover_wait``) name
what the drill waited for. Rounds 9, 17, 25, ... (``number % 8 == 1`` past round 1) unless they
are window rounds, or every round with ``--only-kind replica``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from typing import Any

import pymysql

from drill.common import Drill
from drill.daemon import MAX_RESTARTS, Daemon, RunRecord, daemon_env
from drill.kills import Kill, plan_kills
from drill.replica import TargetReplica, start_replica, table_digest
from drill.rounds.base import HookLogs, Round, Slot
from drill.rounds.forward import ForwardRound

THROTTLED = "replica.throttled"
CUTOVER_WAIT = "replica.cutover_wait"
MAX_REPLICA_LAG_S = 1.0
WAIT_S = 60.0  # how long the drill waits for the line it kills on before it gives that kill up
HELD_S = 0.5  # at most this long after the line before the kill (a random part of it)


class ReplicaRound(ForwardRound):
    """A forward round with a watched target replica, killed while it holds the copy and while the
    cutover waits for it."""

    name = "replica"
    label = "replica"

    def takes(self, slot: Slot) -> bool:
        """Every eighth round from round 9 (9, 17, 25, ...), when it is not a window round: odd
        rounds, so neither the parallel rounds (3, 7, ...) nor, with the default --window-every 2,
        the window rounds lose one."""
        return slot.window is None and slot.number % 8 == 1 and slot.number > 1

    def forward_kills(self, slot: Slot, targeted_index: int, rng: random.Random) -> list[Kill]:
        """The two replica kills. It draws from ``rng`` what a forward round would have drawn, and
        drops it: the rounds after this one keep the plans their seed gave them before this kind."""
        plan_kills(slot.number, targeted_index, rng)
        return [Kill(THROTTLED), Kill(CUTOVER_WAIT)]

    def throttle_keys(self, drill: Drill) -> dict[str, Any]:
        """The drill's replica (started now if this is the first replica round), watched with a
        limit of ``MAX_REPLICA_LAG_S``."""
        replica = start_replica(drill)
        return {"target_replicas": [replica.name], "max_replica_lag_s": MAX_REPLICA_LAG_S}

    def forward_runs(self, rnd: Round) -> Daemon | None:
        """The throttled kill, the cutover-wait kill, then clean restarts until one exits 0."""
        replica = rnd.drill.replica
        assert replica is not None  # throttle_keys started it
        # Draws of its own: the drill's rng must not depend on what happened in this round.
        rng = random.Random(rnd.drill.seed * 1009 + rnd.number)
        throttled, waiting = rnd.kills
        try:
            rec = throttled_run(rnd, replica, throttled, rng)
            resumed_wait = False
            if rec.rc not in (0, 2, 3):
                rec = cutover_wait_run(rnd, replica, waiting, rng)
                resumed_wait = waiting.happened
            restarts = 0
            while rec.rc not in (0, 2, 3) and restarts < MAX_RESTARTS:
                restarts += 1
                rec = restart(rnd, replica, resumed_wait and restarts == 1)
        finally:
            replica.start_sql_thread()  # whatever happened: the next round needs it applying
        return None

    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """A forward round's checks, then the replica: it holds the target's position and every
        moved table's rows."""
        super().data_checks(rnd, out)
        replica = rnd.drill.replica
        assert replica is not None
        target = rnd.drill.pair.target
        try:
            problem = replica.catch_up(target)
            if problem:
                rnd.failures.append(problem)
                out["replica_identical"] = False
                return
            differ = []
            for table in rnd.tables:
                mine = table_digest(target.socket, rnd.dst, table)
                theirs = table_digest(replica.server.socket, rnd.dst, table)
                if mine != theirs:
                    rows = f"{mine[0]} rows on the target, {theirs[0]} on the replica"
                    differ.append(f"{rnd.dst}.{table} ({rows})")
        except pymysql.err.MySQLError as exc:
            rnd.failures.append(f"replica check: {exc}")
            out["replica_identical"] = False
            return
        out["replica_identical"] = not differ
        rnd.failures.extend(f"the replica's {d} differs from the target's" for d in differ)


def start(rnd: Round) -> Daemon:
    """A new ``tablemover run`` of the round (no faults), its log ``run-<n>.log``."""
    return Daemon(rnd.drill.children, rnd.config, rnd.rdir / f"run-{len(rnd.runs) + 1}.log")


def ended(rnd: Round, daemon: Daemon) -> RunRecord:
    """The daemon's record once it has exited, appended to the round's runs."""
    rec = daemon.finish()
    rnd.runs.append(rec)
    return rec


def kill_now(daemon: Daemon, kill: Kill) -> None:
    """SIGKILL the daemon for ``kill`` (recorded with the instant it landed)."""
    kill.delay_s = daemon.elapsed()
    daemon.record.kill_after_s = kill.delay_s
    daemon.kill()
    kill.happened = daemon.record.killed_by_drill


def throttled_run(rnd: Round, replica: TargetReplica, kill: Kill, rng: random.Random) -> RunRecord:
    """Run 1: stop the replica's SQL thread (before the start, or at COPYING), SIGKILL once the copy
    says the replica holds it. When the copy ends first, the SQL thread runs again and the run goes
    on (the kill is then reported as missed)."""
    kill.run_attempted = True
    stopped = rng.random() < 0.5
    rnd.result["replica_sql_stopped"] = "before the start" if stopped else "at COPYING"
    if stopped:
        replica.stop_sql_thread()
    daemon = start(rnd)
    deadline = time.monotonic() + WAIT_S
    try:
        while daemon.poll(wait_s=0.02) is None:
            if not stopped and daemon.reached("COPYING"):
                replica.stop_sql_thread()
                stopped = True
            if stopped and daemon.logged("copy throttled", reason=f"target replica {replica.name}"):
                time.sleep(rng.uniform(0, HELD_S))
                kill_now(daemon, kill)
                break
            if daemon.reached("CUTOVER_STARTED"):
                kill.missed = "the copy ended first"
                break
            if time.monotonic() > deadline:
                kill.missed = f"no replica throttle within {WAIT_S:.0f} s"
                break
    finally:
        replica.start_sql_thread()
    return ended(rnd, daemon)


def release_cutover(rnd: Round) -> None:
    """``tablemover cutover``: let the postponed cutover go."""
    subprocess.run(
        [sys.executable, "-m", "tablemover", "cutover", "-c", str(rnd.config)],
        capture_output=True,
        env=daemon_env(""),
        timeout=60,
        check=False,
    )


def cutover_wait_run(rnd: Round, replica: TargetReplica, kill: Kill, rng: random.Random) -> RunRecord:
    """Run 2, postponed at the cutover: stop the SQL thread, release the cutover, SIGKILL while the
    cutover waits for the replica. The SQL thread stays stopped for the next run."""
    kill.run_attempted = True
    rnd.rewrite_config(postpone_cutover=True)
    daemon = start(rnd)
    released = False
    deadline = time.monotonic() + WAIT_S
    while daemon.poll(wait_s=0.02) is None:
        if not released and daemon.logged("cutover postponed"):
            replica.stop_sql_thread()
            release_cutover(rnd)
            released = True
        if released and daemon.logged("cutover waits for target replicas"):
            time.sleep(rng.uniform(0, HELD_S))
            if not daemon.reached("HOOK_FIRED"):
                kill_now(daemon, kill)
            break
        if time.monotonic() > deadline:
            kill.missed = f"no cutover wait within {WAIT_S:.0f} s"
            break
    # The next runs read the file without the postponement (not sooner: this run reads it as it
    # starts, some time after the process did).
    rnd.rewrite_config()
    if not kill.happened:
        replica.start_sql_thread()  # nothing to resume: the run goes on to its end
        if not kill.missed and daemon.poll() is not None:
            kill.missed = "the run ended first"
    return ended(rnd, daemon)


def restart(rnd: Round, replica: TargetReplica, resumes_wait: bool) -> RunRecord:
    """A clean restart. After a kill in the cutover's wait (``resumes_wait``) the SQL thread is
    still stopped: the restart must wait for the replica again, on-success not run, before the drill
    lets the replica apply."""
    daemon = start(rnd)
    if resumes_wait:
        deadline = time.monotonic() + WAIT_S
        while daemon.poll(wait_s=0.02) is None and time.monotonic() < deadline:
            if daemon.logged("cutover waits for target replicas"):
                if HookLogs.read(rnd.hooks.success):
                    rnd.failures.append("on-success ran before the replica held the drain position")
                break
        else:
            if daemon.poll() is not None:
                rnd.failures.append("the restart after the cutover-wait kill did not wait for the replica")
        replica.start_sql_thread()
    return ended(rnd, daemon)


KIND = ReplicaRound()
