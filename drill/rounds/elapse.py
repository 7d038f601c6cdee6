"""Elapse rounds (every ELAPSE_EVERY-th window round): a short window, the target written and the
daemon SIGKILLed at a random instant of those writes, the source seen caught up while the window is
still open, then the window elapses and the move ends at DONE."""

from __future__ import annotations

import random
from typing import Any

from drill.checks import ROLLBACK_STATES, StateRules, forward_data_checks
from drill.kills import Kill
from drill.rounds.base import Round, Slot, SourceRenames, check_no_rollback_hook
from drill.rounds.windowed import ELAPSE_WINDOW_S, WindowedRound, is_elapse


class ElapseRound(WindowedRound):
    """Nobody asks for a rollback: the forward checks run at the end, the target's writes included."""

    name = "elapse"
    label = "elapse"
    window_s = ELAPSE_WINDOW_S
    target_renames = 0
    rules = StateRules(
        ending=("HOOK_FIRED", "WINDOW_OPEN", "DONE"),
        once=("RENAMED", "HOOK_FIRED"),
        never=ROLLBACK_STATES,  # nobody asks for a rollback
    )

    def takes(self, slot: Slot) -> bool:
        """Every ELAPSE_EVERY-th window round."""
        return is_elapse(slot)

    def plan(self, slot: Slot, rng: random.Random) -> list[Kill]:
        """One kill at a random instant of the target writes."""
        return [Kill(fraction=rng.random())]

    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """The forward checks on the final data; every acknowledged target write is in the source's
        ``_<t>_moved``; the source was seen caught up while the window was open."""
        out.update(forward_data_checks(rnd.drill, rnd.config, (rnd.db, rnd.dst), rnd.tables, rnd.failures))
        self.acked_checks(rnd, out, {t: f"_{t}_moved" for t in rnd.tables})
        wrun = rnd.wrun
        if wrun is not None:
            out["caught_up_s"] = wrun.caught_up_s
            if wrun.caught_up_s is None:
                rnd.failures.append(
                    "the source's renamed tables were not seen equal to the target's while the window "
                    f"was open (state when they were: {wrun.caught_up_state or 'never'})"
                )

    def source_renames(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """Exactly one RENAME, the cutover's."""
        if source.renames != 1 or source.away != 1:
            rnd.failures.append(
                f"the source binlog holds {source.renames} RENAMEs of {rnd.db}'s tables, not 1"
            )

    def hook_checks(self, rnd: Round, trans: list[tuple[str, int]], out: dict[str, Any]) -> None:
        """No rollback hook ran."""
        check_no_rollback_hook(rnd)


KIND = ElapseRound()
