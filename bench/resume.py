"""Resume time after SIGKILL (spec section 10: SIGKILL to copying again < 3 s; re-copied rows after a
crash <= 1 chunk per table).

One move of a large table is SIGKILLed mid-copy ``resumes`` times, each time at a later point of the
copy, and restarted at once. For each kill:

* ``resume_s``: from the SIGKILL to the first ``status`` reply of the restarted daemon whose
  committed ``rows_copied`` is past the checkpoint it resumed from, i.e. its first chunk committed
  after the restart. The daemon logs no line per chunk, so the bench polls ``status`` on the control
  socket every :data:`POLL_S` (the figure is late by at most that plus one round trip).
* ``startup_s``: from the SIGKILL to the restarted daemon's ``resuming move from checkpoint`` line
  (process start, imports, preflight): the part of ``resume_s`` that is not copying.
* ``re_copied_rows``: rows the target already held beyond the checkpoint the restart resumed from
  (``MAX(id)`` of the target table, read right after the restart began, minus the checkpoint's
  ``rows_copied``; ids are 1..N and copied in order). The checkpoint is committed in the same target
  transaction as its chunk, so this should be 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import (
    MSG_RESUMING,
    RUN_TIMEOUT_S,
    TABLE,
    BenchError,
    Daemon,
    check_equal,
    create_filled_table,
    median,
    socket_path,
    status,
    write_config,
)
from tablemover.local.mariadb import LocalPair

DB = "bench_resume"
POLL_S = 0.01
RESUME_TIMEOUT_S = 60.0
TARGET_S = 3.0
FIRST_KILL, LAST_KILL = 0.15, 0.75  # kill points as fractions of the table, evenly spaced between


def kill_points(rows: int, resumes: int) -> list[int]:
    """The committed row counts at which to kill, evenly spaced over the middle of the copy."""
    if resumes == 1:
        return [int(rows * (FIRST_KILL + LAST_KILL) / 2)]
    step = (LAST_KILL - FIRST_KILL) / (resumes - 1)
    return [int(rows * (FIRST_KILL + i * step)) for i in range(resumes)]


def wait_rows(daemon: Daemon, sock: str, rows: int) -> int:
    """Wait until the daemon's committed ``rows_copied`` reaches ``rows``; returns it."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        if daemon.poll() is not None:
            raise BenchError(
                f"resume: tablemover run exited {daemon.returncode} before {rows:,} rows were copied "
                f"(a larger --resume-rows gives the kills room):\n{daemon.tail()}"
            )
        reply = status(sock)
        if reply is not None and int(reply.get("rows_copied", 0)) >= rows:
            return int(reply["rows_copied"])
        if time.monotonic() > deadline:
            raise BenchError(f"resume: {rows:,} rows not copied within {RUN_TIMEOUT_S:.0f} s")
        time.sleep(2 * POLL_S)


def wait_copying_again(daemon: Daemon, sock: str) -> tuple[float, int, dict[str, Any]]:
    """Wait for the restarted daemon's first committed chunk; (time.time() then, checkpoint rows it
    resumed from, its ``resuming`` log line)."""
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    resumed: dict[str, Any] | None = None
    while True:
        reply = status(sock)
        seen_at = time.time()
        # The daemon may answer status before it has read its checkpoint (its control socket opens
        # first): until its resuming line is in the log there is nothing to compare with.
        resumed = resumed or (daemon.find(MSG_RESUMING) if reply is not None else None)
        if reply is not None and resumed is not None:
            from_rows, done = resumed.get("progress", {}).get(TABLE, [0, False])
            if done:
                raise BenchError(
                    "resume: the copy was already complete at the kill (a larger --resume-rows gives "
                    "the kills room)"
                )
            if int(reply.get("rows_copied", 0)) > int(from_rows):
                return seen_at, int(from_rows), resumed
        if daemon.poll() is not None:
            raise BenchError(f"resume: the restarted run exited {daemon.returncode}:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"resume: not copying again within {RESUME_TIMEOUT_S:.0f} s:\n{daemon.tail()}")
        time.sleep(POLL_S)


def bench_resume(pair: LocalPair, workdir: Path, rows: int, resumes: int) -> dict[str, Any]:
    """SIGKILL a copying move ``resumes`` times, restart it at once, time each return to copying."""
    create_filled_table(pair.source, DB, rows)
    config = write_config(pair, workdir, DB, DB, [TABLE])
    sock = socket_path(workdir, DB)
    dst = f"{DB}_dst"
    kills: list[dict[str, Any]] = []
    daemon = Daemon(config, workdir / f"{DB}-run-1.log", stop_before_cutover=True).start()
    try:
        for number, point in enumerate(kill_points(rows, resumes), 1):
            reported = wait_rows(daemon, sock, point)
            killed_at = daemon.kill()
            daemon = Daemon(config, workdir / f"{DB}-run-{number + 1}.log", stop_before_cutover=True).start()
            # The restart needs far longer than this query to commit anything, so MAX(id) is what
            # the killed daemon left committed.
            max_id = pair.target.execute(f"SELECT COALESCE(MAX(id), 0) FROM `{dst}`.`{TABLE}`")[0][0]
            target_rows = int(str(max_id))
            copying_at, from_rows, resumed = wait_copying_again(daemon, sock)
            kills.append(
                {
                    "kill_at_rows": reported,  # the last committed count status showed before the kill
                    "checkpoint_rows": from_rows,
                    "target_rows_at_kill": target_rows,
                    "re_copied_rows": max(0, target_rows - from_rows),
                    "status_ahead_of_checkpoint": max(0, reported - from_rows),
                    "startup_s": round(float(resumed["ts"]) - killed_at, 3),
                    "resume_s": round(copying_at - killed_at, 3),
                }
            )
        rc = daemon.wait(RUN_TIMEOUT_S)
        if rc != 0:
            raise BenchError(f"resume: the last run exited {rc}:\n{daemon.tail()}")
    finally:
        daemon.kill()  # no-op once it has exited
    verified = check_equal(pair, (DB, TABLE), (dst, TABLE), "after the resume runs")
    times = [k["resume_s"] for k in kills]
    return {
        "table_rows": rows,
        "resumes": resumes,
        "kills": kills,
        "resume_s": times,
        "median_s": round(median(times), 3),
        "max_s": round(max(times), 3),
        "startup_median_s": round(median([k["startup_s"] for k in kills]), 3),
        "re_copied_rows_max": max(k["re_copied_rows"] for k in kills),
        "poll_interval_s": POLL_S,
        "verified_rows": verified,
        "target_s": TARGET_S,
    }
