"""Rollback rounds: the window stays open, the application writes to the target, the rollback is
asked for and the daemon SIGKILLed at the window's fault points (cycled) and, every other rollback
round, at a random instant of the window phase; the source must end equal to the target's
rolled-back tables, every acknowledged target write on it."""

from __future__ import annotations

import random
import time
from typing import Any

from drill.checks import StateRules, diff_tables, forward_data_checks, hook_problems
from drill.kills import Kill
from drill.rounds.base import HookLogs, Round, Slot, SourceRenames
from drill.rounds.windowed import ELAPSE_EVERY, ROLLBACK_WINDOW_S, WindowedRound, is_elapse

# The rollback window's fault points, in the order a rollback passes them.
WINDOW_POINTS = (
    "state.WINDOW_OPEN",  # window recorded, reverse feed not started (no rollback asked yet)
    "state.ROLLBACK_STARTED",  # intent written, on-before-rollback not run, target not renamed
    "rollback.after_rename",  # target RENAME committed, ROLLBACK_RENAMED not written
    "state.ROLLBACK_RENAMED",
    "state.ROLLBACK_DRAINED",  # every target write on the source, source tables not renamed back
    "restore.after_rename",  # source RENAME back committed, on-rollback not run
    "hook.before_rollback",  # on-rollback attempt recorded, hook not started
    "state.ROLLED_BACK",
)


class RollbackRound(WindowedRound):
    """The window rounds that are not elapse rounds (4 of every 5)."""

    name = "rollback"
    label = "rollback"
    window_s = ROLLBACK_WINDOW_S
    target_renames = 1
    rules = StateRules(
        ending=("ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"),
        once=("RENAMED", "HOOK_FIRED", "ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"),
        never=frozenset(),
    )

    def takes(self, slot: Slot) -> bool:
        """Window rounds, but every ELAPSE_EVERY-th."""
        return slot.window is not None and not is_elapse(slot)

    def plan(self, slot: Slot, rng: random.Random) -> list[Kill]:
        """SIGKILLed at the next window fault point in turn and, every other rollback round, at a
        random instant of the window phase too."""
        assert slot.window is not None
        rollback_index = slot.window - 1 - slot.window // ELAPSE_EVERY
        kills = [Kill(WINDOW_POINTS[rollback_index % len(WINDOW_POINTS)])]
        if rollback_index % 2 == 1:
            kills.append(Kill(fraction=rng.random()))
        return kills

    def at_window_open(self, rnd: Round) -> None:
        """The forward move's data checks."""
        # Nothing writes anywhere now: the source's tables are renamed away and the target's
        # application has not started. The forward move is checked here, on settled data.
        checks_from = time.monotonic()
        rnd.forward = forward_data_checks(
            rnd.drill, rnd.config, (rnd.db, rnd.dst), rnd.tables, rnd.failures, "at WINDOW_OPEN"
        )
        rnd.result["forward_checks_s"] = round(time.monotonic() - checks_from, 1)

    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """The forward checks of WINDOW_OPEN; every source table, under its own name again, equals the
        target's ``_<t>_rolledback``; every acknowledged target write is in the source's ``<t>``."""
        if rnd.forward is not None:
            out.update(rnd.forward)
            # The source, its tables under their names again, holds exactly what the target held.
            pairs = [(t, (rnd.db, t), (rnd.dst, f"_{t}_rolledback")) for t in rnd.tables]
            out["rollback_dump_diff"], _rows, pt = diff_tables(
                rnd.drill, pairs, rnd.failures, "after the rollback"
            )
            if pt is not None:
                out["rollback_pt_table_sync"] = pt
        self.acked_checks(rnd, out, {t: t for t in rnd.tables})

    def source_renames(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """One RENAME away (the cutover) and one back (the rollback's restore)."""
        out["restores"] = source.back
        if (source.away, source.back, source.renames) != (1, 1, 2):
            rnd.failures.append(
                f"the source binlog holds {source.renames} RENAMEs of {rnd.db}'s tables ({source.away} "
                f"away, {source.back} back), not one away and one back"
            )

    def hook_checks(self, rnd: Round, trans: list[tuple[str, int]], out: dict[str, Any]) -> None:
        """on-rollback's attempts increase and the last is the one ROLLED_BACK records;
        on-before-rollback ran, in ROLLBACK_STARTED."""
        hooks, failures = rnd.hooks, rnd.failures
        out["rollback_hook_attempts"] = rb = [int(x) for x in HookLogs.read(hooks.rollback)]
        failures.extend(
            hook_problems("on-rollback", rb, [a for s, a in trans if s == "ROLLED_BACK"], "ROLLED_BACK")
        )
        out["before_rollback_runs"] = before = HookLogs.read(hooks.before_rollback)
        if not before or set(before) != {"ROLLBACK_STARTED"}:
            failures.append(
                f"on-before-rollback ran {len(before)} times, in states {before} "
                "(once at least, and in ROLLBACK_STARTED)"
            )


KIND = RollbackRound()
