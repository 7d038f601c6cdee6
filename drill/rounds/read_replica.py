"""Read-replica rounds (issue #24): a forward round whose move reads rows and the binlog from a GTID
replica of the source (``[replica]``), while the RENAME and its position stay on the primary.

The replica is the drill's own (:mod:`drill.read_replica`, started the first time such a round runs).
The round's kills are a forward round's (:func:`drill.kills.plan_kills`: a targeted fault point or a
random instant, sometimes a second kill in the restart; restarts until exit 0), so the SIGKILLs land
in the forward states with the replica in the loop. Beside them a thread of the drill watches the
runs' logs and, in half of the read-replica rounds (the 1st, 4th, 5th, 8th, ...: with
``--only-kind read_replica`` rounds of targeted kills and rounds of random kills alike), adds trouble
of its own:

* **SQL thread stopped mid-copy.** Once a run reports COPYING (these rounds copy in small fixed
  chunks, ``SLOW_COPY``, so COPYING lasts far longer than the watcher's poll), the
  replica's SQL thread is stopped (only then: ``STOP SLAVE SQL_THREAD`` hangs while the SQL thread
  waits on a metadata lock, as it does applying the RENAME). Within ``WAIT_S`` the daemon must say
  it waits for the replica: its watch's ``the replica the move reads from has a problem``, its
  ``copy throttled`` naming ``read replica HOST:PORT``, or, in a restart after a kill, ``the replica
  cannot be read from``. The drill then asks ``tablemover status`` (its ``waiting_for``), holds the
  thread stopped a little longer (``HOLD_S``) and starts it again. A run that leaves COPYING
  before the watcher sees it leaves the stop missed (a warning). The runs of such a round do not
  count towards the timings the random kills draw from (the hold is in them).

Beyond a forward round's checks (verify, the dump diff, pt-table-sync, one RENAME, the state graph,
the hook once):

* the move user read its rows on the replica, not the primary: each server's
  ``USER_STATISTICS.ROWS_READ`` of the move user over the forward runs (before the checks' own
  reads) is 0 on the primary and at least ``REPLICA_READS_MIN`` of every table's rows on the
  replica;
* ``tablemover status``, asked while the runs work, never said the move reads anything but
  ``reading_from = "replica HOST:PORT"``. Best effort: a short run may end (or be killed) before a
  call gets through; the JSON's ``reading_from`` lists what the calls said.

Rounds 5, 13, 21, ... (``number % 8 == 5``) unless they are window rounds, or every round with
``--only-kind read_replica``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

from drill.common import Drill
from drill.daemon import Daemon, LogTail, daemon_env
from drill.kills import Kill
from drill.read_replica import ReadReplica, rows_read, start_read_replica
from drill.rounds.base import Round, Slot
from drill.rounds.forward import ForwardRound
from tablemover.local.mariadb import pair_config

POLL_S = 0.02  # how often the watcher reads the runs' logs
WAIT_S = 60.0  # how long the daemon has to say it waits for the stopped replica
HOLD_S = (1.0, 2.5)  # the SQL thread stays stopped this long (random) after the daemon said so
STATUS_TIMEOUT_S = 30.0
STATUS_EVERY_S = 1.0  # at most one `tablemover status` a second
STATUS_TRIES = 3  # a run's status asks until one says where it reads
# The move user reads no row on the primary (the RENAME, its position and the blocker check read
# none); on the replica at least this share of every table's rows (the copy; the trailing checksum
# reads them again). The write load deletes and inserts, hence not all of them.
REPLICA_READS_MIN = 0.9
SLOW_COPY = {"chunk_size": 100, "adaptive_chunk_size": False}  # rounds that stop the SQL thread
PAST_COPY = frozenset({"CUTOVER_STARTED", "RENAMED", "DRAINED", "HOOK_FIRED", "DONE"})
# Where a daemon says it waits for the replica: the copy's throttle, the watch of the running
# pipeline, the probe a (re)started attempt makes before it reads.
WAIT_LINES = (
    "copy throttled",
    "the replica the move reads from has a problem",
    "the replica cannot be read from",
)


class RunLog:
    """One run's JSON log as it grows, read by the watcher (``drill.daemon`` reads it on its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self.states: list[str] = []
        self._tail = LogTail(path)

    def scan(self) -> None:
        """Read what the daemon appended since the last scan."""
        for line in self._tail.read_new():
            self.lines.append(line)
            if line.get("msg") == "state changed":
                self.states.append(str(line.get("state")))

    def count(self, msg: str) -> int:
        """Lines with message ``msg``."""
        return sum(1 for line in self.lines if line.get("msg") == msg)

    def copying(self) -> bool:
        """Whether the run is in COPYING: it reported COPYING (or copy work) and no later state.

        Copied tables do not matter: until the cutover the pipeline reads the replica's binlog and
        its watch samples the replica, so a stop in COPYING is always seen and said."""
        started = bool(self.states) and self.states[-1] == "COPYING"
        started = started or (not self.states and bool(self.count("copy planned")))
        return started and not PAST_COPY.intersection(self.states)

    def waits_for(self, replica: str, since: int = 0) -> dict[str, Any] | None:
        """The first line from line ``since`` on in which the daemon says it waits for the replica
        (None: not yet)."""
        for line in self.lines[since:]:
            msg = str(line.get("msg"))
            if msg not in WAIT_LINES:
                continue
            said = str(line.get("reason", "")) + str(line.get("problem", ""))
            if msg != "copy throttled" or said.startswith(f"read replica {replica}"):
                return {"msg": msg, "reason": said[:300]}
        return None


def run_logs(rdir: Path) -> list[Path]:
    """The round's run logs (``run-<n>.log``), in order."""
    found = []
    for path in rdir.glob("run-*.log"):
        number = path.stem.removeprefix("run-")
        if number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found)]


def tablemover_status(config: Path) -> dict[str, Any]:
    """``tablemover status --json`` of the running daemon ({} when it did not answer)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tablemover", "status", "--json", "-c", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(""),
            timeout=STATUS_TIMEOUT_S,
            check=False,
        )
        doc = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (subprocess.TimeoutExpired, ValueError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("origin") == "daemon" else {}


class Watcher(threading.Thread):
    """Beside the forward runs: asks the running daemon where it reads, and (``stop_sql``) stops the
    replica's SQL thread mid-copy until the daemon said it waits for it."""

    def __init__(self, rnd: Round, replica: ReadReplica, stop_sql: bool, rng: random.Random) -> None:
        super().__init__(name=f"read-replica-round-{rnd.number}", daemon=True)
        self.rnd = rnd
        self.replica = replica
        self.rng = rng
        self.over = threading.Event()  # the forward runs are over
        self.reading_from: list[str] = []  # every value a status gave, in order
        self.sql: dict[str, Any] = {"planned": stop_sql}
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self._phase = "armed" if stop_sql else "done"
        self._stopped_at = 0.0
        self._stopped = False
        self._logs: dict[Path, RunLog] = {}
        self._asked: dict[Path, int] = {}
        self._last_ask = 0.0
        self._since = 0

    def run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # reported as the round's failure, never lost
            self.failures.append(f"the read-replica watcher failed: {exc!r}")
        finally:
            self.resume()

    def resume(self) -> None:
        """Start the SQL thread again if this watcher stopped it (idempotent)."""
        if self._stopped:
            self._stopped = False
            self.replica.start_sql_thread()
            self.sql["held_s"] = round(time.monotonic() - self._stopped_at, 2)

    def _log(self, path: Path) -> RunLog:
        if path not in self._logs:
            self._logs[path] = RunLog(path)
        log = self._logs[path]
        log.scan()
        return log

    def _watch(self) -> None:
        while not self.over.wait(POLL_S):
            paths = run_logs(self.rnd.rdir)
            if not paths:
                continue
            current = self._log(paths[-1])
            if self._phase == "armed" and current.copying():
                self.replica.stop_sql_thread()
                self._stopped, self._stopped_at = True, time.monotonic()
                self._phase = "stopped"
                self._since = len(current.lines)  # what the run says from now on
                self.sql.update({"run": len(paths), "at_rows_copied": copied(current)})
            elif self._phase == "stopped":
                self._while_stopped(paths, current)
            if self._phase != "armed":
                self._ask_status(paths[-1], current)
        if self._phase == "armed":
            self.sql["missed"] = "no run was seen copying"
            self.warnings.append("the replica's SQL thread was not stopped: no run was seen copying")

    def _while_stopped(self, paths: list[Path], current: RunLog) -> None:
        """Wait for the daemon to say it waits (in the run stopped in, or a restart after a kill),
        then hold a little, ask status, and let the replica apply again."""
        first = int(self.sql["run"]) - 1
        said, run = None, first
        for run, path in enumerate(paths[first:], first):
            said = self._log(path).waits_for(self.replica.address, self._since if run == first else 0)
            if said is not None:
                break
        if said is not None:
            waited = time.monotonic() - self._stopped_at
            self.sql.update({"said": said, "said_after_s": round(waited, 2), "said_in_run": run + 1})
            hold_until = time.monotonic() + self.rng.uniform(*HOLD_S)
            doc = tablemover_status(self.rnd.config)
            if doc:
                self.sql["status_waiting_for"] = str(doc.get("waiting_for", ""))[:300]
                self._record(doc)
            time.sleep(max(0.0, hold_until - time.monotonic()))
            self.resume()
            self._phase = "done"
        elif PAST_COPY.intersection(current.states):
            self.sql["missed"] = "the copy ended first"
            self.warnings.append("the replica's SQL thread was stopped as the copy ended: no wait to see")
            self.resume()
            self._phase = "done"
        elif time.monotonic() - self._stopped_at > WAIT_S:
            self.failures.append(
                f"the daemon did not say it waits for the read replica within {WAIT_S:.0f} s of its "
                "SQL thread stopping mid-copy"
            )
            self.resume()
            self._phase = "done"

    def _ask_status(self, path: Path, log: RunLog) -> None:
        """Until a status said where the move reads: ask the run once it listens (at most
        ``STATUS_TRIES`` times a run, ``STATUS_EVERY_S`` apart)."""
        if any(self.reading_from) or not log.count("control socket listening"):
            return
        if self._asked.get(path, 0) >= STATUS_TRIES or time.monotonic() - self._last_ask < STATUS_EVERY_S:
            return
        self._asked[path] = self._asked.get(path, 0) + 1
        self._record(tablemover_status(self.rnd.config))
        self._last_ask = time.monotonic()

    def _record(self, doc: dict[str, Any]) -> None:
        if doc and "reading_from" in doc:
            self.reading_from.append(str(doc["reading_from"]))


def copied(log: RunLog) -> int | None:
    """Rows copied by the run's latest progress line (None before one)."""
    for line in reversed(log.lines):
        if line.get("msg") == "progress":
            return int(line.get("rows_copied", 0))
    return None


class ReadReplicaRound(ForwardRound):
    """A forward round reading from a replica of the source, whose SQL thread the drill stops
    mid-copy in half of such rounds."""

    name = "read_replica"
    label = "read-replica"

    def __init__(self) -> None:
        self.taken = 0  # rounds this kind has planned so far
        self.stop_sql: dict[int, bool] = {}  # round number -> whether the SQL thread stops mid-copy

    def takes(self, slot: Slot) -> bool:
        """Every eighth round from round 5 (5, 13, 21, ...), when it is not a window round: neither
        the parallel rounds (3, 7, ...) nor the replica rounds (9, 17, ...) lose one, nor, with the
        default --window-every 2, the window rounds; round 1, which times the first run for the
        random kills, stays a forward round."""
        return slot.window is None and slot.number % 8 == 5

    def forward_kills(self, slot: Slot, targeted_index: int, rng: random.Random) -> list[Kill]:
        """A forward round's kills; the 1st, 4th, 5th, 8th, ... round of this kind also stops the
        replica's SQL thread mid-copy (in pairs: odd rounds kill at fault points, even ones at a
        random instant, which may then land while the thread is stopped)."""
        self.taken += 1
        self.stop_sql[slot.number] = self.taken % 4 in (0, 1)
        return super().forward_kills(slot, targeted_index, rng)

    def move_keys(self) -> dict[str, Any]:
        """Wait for the replica (the default), never read from the primary instead."""
        return {"replica_fallback": "wait"}

    def throttle_keys(self, drill: Drill) -> dict[str, Any]:
        """Nothing for [throttle]; the read replica is started now if this is the first such round
        (before the config is written: :meth:`forward_runs` adds its ``[replica]``)."""
        start_read_replica(drill)
        return {}

    def forward_runs(self, rnd: Round) -> Daemon | None:
        """The config with ``[replica]``, then a forward round's runs with the watcher beside them."""
        replica = start_read_replica(rnd.drill)
        drill = rnd.drill
        stop_sql = self.stop_sql.get(rnd.number, False)
        if stop_sql:
            # Small fixed chunks: the copy lasts many chunk commits (hundreds of ms even on a fast
            # machine), so the watcher, polling every POLL_S, sees it copying and the stop lands.
            rnd.move.update(SLOW_COPY)
        write_read_config(rnd, self.replica_section(rnd, replica))
        timed = len(drill.full_runs), len(drill.restart_runs)
        before = mover_reads(rnd, replica)
        watcher = Watcher(rnd, replica, stop_sql, random.Random(drill.seed * 1013 + rnd.number))
        rnd.result["replica_sql_stop"] = watcher.sql
        watcher.start()
        try:
            live = super().forward_runs(rnd)
        finally:
            watcher.over.set()
            watcher.join(timeout=120)
            watcher.resume()  # the next round needs it applying, whatever happened
        if stop_sql:
            # The drill's own hold is in these runs' durations: the random kills of later rounds
            # must not draw from them.
            del drill.full_runs[timed[0] :], drill.restart_runs[timed[1] :]
        after = mover_reads(rnd, replica)
        rnd.result["reading_from"] = watcher.reading_from
        rnd.result["mover_rows_read"] = {
            side: (after[side] - before[side]) if side in after and side in before else None
            for side in ("primary", "replica")
        }
        rnd.failures.extend(watcher.failures)
        rnd.warnings.extend(watcher.warnings)
        return live

    def replica_section(self, rnd: Round, replica: ReadReplica) -> dict[str, Any]:
        """The config's ``[replica]``: the drill's read replica, as the move user (with the
        command line's TLS keys, were --tls allowed here)."""
        return {**rnd.drill.server_keys, **replica.section()}

    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """A forward round's checks, then where the move read: status said the replica, and the
        move user read its rows there."""
        super().data_checks(rnd, out)
        replica = start_read_replica(rnd.drill)
        wanted = f"replica {replica.address}"
        # Best effort: a short run may end (or be killed) before a status call gets through.
        seen = [v for v in rnd.result.get("reading_from", []) if v]
        wrong = sorted({v for v in seen if v != wanted})
        if wrong:
            rnd.failures.append(f"status said the move reads from {', '.join(wrong)}, not {wanted}")
        reads = rnd.result.get("mover_rows_read", {})
        primary, on_replica = reads.get("primary"), reads.get("replica")
        before = len(rnd.failures)
        if primary is None or on_replica is None:
            rnd.failures.append("the move user's rows read could not be counted (userstat)")
        else:
            if primary:
                rnd.failures.append(
                    f"the move user read {primary:,} rows on the primary during the forward runs, "
                    "which read from the replica"
                )
            least = int(REPLICA_READS_MIN * rnd.drill.rows * len(rnd.tables))
            if on_replica < least:
                rnd.failures.append(
                    f"the move user read only {on_replica:,} rows on the replica (fewer than {least:,}): "
                    "it did not copy every table from there"
                )
        reads_wrong = len(rnd.failures) > before
        out["read_from_replica"] = not wrong and not reads_wrong


def write_read_config(rnd: Round, section: dict[str, Any]) -> None:
    """The round's config again, with ``[replica]`` ``section`` (``base.write_config`` writes no
    such section; none when ``section`` is empty)."""
    keys = rnd.drill.server_keys
    rnd.config.write_text(
        pair_config(
            rnd.drill.pair,
            rnd.rdir,
            rnd.move,
            source=keys,
            target=keys,
            replica=section,
            throttle=rnd.throttle,
        )
    )


def mover_reads(rnd: Round, replica: ReadReplica) -> dict[str, int]:
    """Rows the move user has read so far on the primary and on the replica ({} when unreadable)."""
    try:
        return {"primary": rows_read(rnd.drill.pair.source), "replica": rows_read(replica.server)}
    except pymysql.err.MySQLError as exc:
        rnd.warnings.append(f"userstat: {exc}")
        return {}


KIND = ReadReplicaRound()
