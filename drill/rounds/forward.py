"""Forward rounds: the move to DONE with no rollback window, SIGKILLed at a commit boundary of the
binlog writer, in a cutover state or at a random instant of the copy and cutover
(:func:`drill.kills.plan_kills`), then restarted until it exits 0. Every round that is not a window
round."""

from __future__ import annotations

from typing import Any

from drill.checks import ROLLBACK_STATES, StateRules, forward_data_checks
from drill.rounds.base import Round, RoundKind, Slot, SourceRenames, check_no_rollback_hook


class ForwardRound(RoundKind):
    """No rollback window: the move ends at DONE and every check runs on the final data."""

    name = "forward"
    label = ""
    rules = StateRules(
        ending=("HOOK_FIRED", "DONE"),
        once=("RENAMED", "HOOK_FIRED"),
        never=ROLLBACK_STATES | {"WINDOW_OPEN"},
    )

    def takes(self, slot: Slot) -> bool:
        """Every round that is not a window round."""
        return slot.window is None

    def data_checks(self, rnd: Round, out: dict[str, Any]) -> None:
        """``tablemover verify``, the dump diff and pt-table-sync of the moved tables."""
        out.update(forward_data_checks(rnd.drill, rnd.config, (rnd.db, rnd.dst), rnd.tables, rnd.failures))

    def binlog_checks(self, rnd: Round, out: dict[str, Any], source: SourceRenames) -> None:
        """The source binlog holds exactly one RENAME of the round's tables."""
        out["renames"] = source.renames
        out["write_transactions"] = source.commits
        if source.renames != 1:
            rnd.failures.append(
                f"the source binlog holds {source.renames} RENAMEs of {rnd.db}'s tables, not 1"
            )

    def hook_checks(self, rnd: Round, trans: list[tuple[str, int]], out: dict[str, Any]) -> None:
        """No rollback hook ran."""
        check_no_rollback_hook(rnd)


KIND = ForwardRound()
