"""What the two window kinds (:mod:`drill.rounds.rollback`, :mod:`drill.rounds.elapse`) share: the move
runs with ``rollback_window_s``, the forward runs end at WINDOW_OPEN, and the window phase
(:func:`drill.window.window_phase`) takes over from the daemon that opened it."""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import pymysql

from drill.checks import acked_problems
from drill.daemon import Daemon, round_runs
from drill.db import count_renames, scan_binlog
from drill.rounds.base import Round, RoundKind, Slot, SourceRenames
from drill.window import WindowPlan, window_phase

# Window rounds. A rollback round keeps the window open (ROLLBACK_WINDOW_S) until it rolls back; an
# elapse round (every ELAPSE_EVERY-th window round) opens a short one (ELAPSE_WINDOW_S) and lets it
# close. ELAPSE_WINDOW_S covers the target writes, a kill and restart and the catch-up check with
# room to spare on 2 loaded cores: the drill never relies on it for correctness (it waits on the
# data), but a window closing while the daemon is down would end the move before the reverse
# feed caught up, which is the documented behaviour, not a finding.
ELAPSE_EVERY = 5
ROLLBACK_WINDOW_S = 600
ELAPSE_WINDOW_S = 10


def is_elapse(slot: Slot) -> bool:
    """Whether ``slot`` is an elapse round's: every ELAPSE_EVERY-th window round."""
    return slot.window is not None and slot.window % ELAPSE_EVERY == 0


class WindowedRound(RoundKind):
    """A round with a rollback window: after the forward checks' part, the application writes to the
    target and the daemon is SIGKILLed again in the window phase."""

    window_s: int  # the move's rollback_window_s
    target_renames: int  # RENAMEs of the round's tables the target binlog must hold

    def rollback_hooks(self) -> bool:
        """on-before-rollback and on-rollback as well (a round that does not roll back checks that
        they never ran)."""
        return True

    def move_keys(self) -> dict[str, Any]:
        """The rollback window."""
        return {"rollback_window_s": self.window_s}

    def window_plan(self, rnd: Round) -> WindowPlan:
        """The round's kills after the cutover, as the window phase takes them."""
        return WindowPlan(self.label, rnd.later_kills)

    def forward_runs(self, rnd: Round) -> Daemon | None:
        """The runs end at WINDOW_OPEN instead of DONE, the window's fault point armed in every run
        until it fires; the daemon that opened the window, still running (None when it died there,
        or never got there)."""
        runs, live = round_runs(
            rnd.drill,
            rnd.kills,
            rnd.config,
            rnd.rdir,
            until_window=True,
            window_point=self.window_plan(rnd).point,
        )
        rnd.runs.extend(runs)
        return live

    def at_window_open(self, rnd: Round) -> None:
        """What the round does at WINDOW_OPEN, before the target is written (nothing here)."""

    def after_runs(self, rnd: Round, live: Daemon | None) -> None:
        """The window phase, from WINDOW_OPEN to the end of the move."""
        if live is None and not (rnd.runs and rnd.runs[-1].reached_window):
            rnd.failures.append("the move never reached WINDOW_OPEN")
            return
        self.at_window_open(rnd)
        drill = rnd.drill
        window_from = time.monotonic()
        wrun = window_phase(
            drill,
            self.window_plan(rnd),
            rnd.config,
            rnd.rdir,
            (rnd.db, rnd.dst),
            rnd.tables,
            live,
            rnd.runs,
            drill.seed * 100 + rnd.number,
        )
        rnd.wrun = wrun
        rnd.result["window_run"] = {**wrun.as_json(), "seconds": round(time.monotonic() - window_from, 1)}
        assert wrun.load is not None
        rnd.ended.extend((f"target {name}", how) for name, how in wrun.load.ended.items())
        rnd.warnings.extend(f"rollback request: {e}" for e in wrun.ask_errors)

    def acked_checks(self, rnd: Round, out: dict[str, Any], holder: dict[str, str]) -> None:
        """Every write the target acknowledged is on the source (``holder``: the target's table ->
        the source table that holds it now)."""
        wrun = rnd.wrun
        if wrun is None or wrun.load is None:
            return
        acked = wrun.load.acked
        out["acked_writes"] = acked.acked
        if acked.acked == 0:
            rnd.failures.append("the target acknowledged no write during the window")
        try:
            lost = acked_problems(rnd.drill.pair, rnd.db, holder, acked.expected)
        except pymysql.err.MySQLError as exc:
            lost = [f"could not read the source: {exc}"]
        out["acked_lost"] = len(lost)
        if lost:
            rnd.failures.append(
                f"{len(lost)} of {acked.acked} writes the target acknowledged are not on the source: "
                + "; ".join(lost[:3])
            )

    @abstractmethod
    def source_renames(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """What the source binlog must hold of the round's RENAMEs."""

    def binlog_checks(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """The source binlog's RENAMEs (:meth:`source_renames`), and the target's: ``target_renames``
        of them, each to the rolled-back names."""
        out["renames"] = source.away
        out["write_transactions"] = source.commits
        self.source_renames(rnd, out, source)
        pair, dst, tables, marks, wrun = rnd.drill.pair, rnd.dst, rnd.tables, rnd.marks, rnd.wrun
        try:
            tstatements, target_commits = scan_binlog(
                pair.target.socket, dst, marks.target_since, wrun.target_from if wrun else ("~", 0)
            )
            target_renames = len(tstatements)
            away = count_renames(tstatements, dst, tables[0], f"_{tables[0]}_rolledback")
        except pymysql.err.MySQLError as exc:
            rnd.failures.append(f"target binlog scan: {exc}")
            target_renames = away = target_commits = -1
        out["target_renames"] = target_renames
        out["target_write_transactions"] = target_commits
        want = self.target_renames
        if (target_renames, away) != (want, want):
            rnd.failures.append(
                f"the target binlog holds {target_renames} RENAMEs of {dst}'s tables ({away} to the "
                f"rolled-back names), not {want}"
            )
