"""A checkpoint row is a claim; the servers are the truth.

The checkpoint table sits where other accounts may be able to write (the target schema), so a
resume does not believe its newest row on its own word:

- the rows must tell a history the state machine could have written: every change of state between
  consecutive rows is one of ``machine.TRANSITIONS`` (a forged ``RENAMED`` after ``COPYING``, or a
  ``COPYING`` after ``DONE``, is not);
- a state that says the source tables are renamed away (from RENAMED until a rollback puts them
  back) must be what the source shows.

Either failing stops the run with exit 3 before anything is done on the row's word (no hook fired,
no table renamed or dropped): an operator must find out who wrote the row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.cutover import SourceTables, inspect_source
from tablemover.errors import SafetyRefusal
from tablemover.machine import TRANSITIONS, State

# Every (from, to) the machine can persist; a row repeating its predecessor's state (progress) is
# always fine.
EDGES = frozenset((source, dest) for _, sources, dest in TRANSITIONS for source in sources)

# States in which the source's moved tables are renamed away, whatever happened since the RENAME:
# a resume there acts on it (drains, fires on-success, opens the window, renames the target).
# ROLLBACK_DRAINED is left out: the source's RENAME back may or may not have run (rollback.py
# inspects that itself); terminal states do nothing on resume.
SOURCE_RENAMED = frozenset(
    {
        State.RENAMED,
        State.DRAINED,
        State.HOOK_FIRED,
        State.WINDOW_OPEN,
        State.ROLLBACK_STARTED,
        State.ROLLBACK_RENAMED,
    }
)


def impossible_step(history: Sequence[Checkpoint]) -> tuple[Checkpoint, Checkpoint] | None:
    """The first pair of consecutive rows whose change of state the machine does not allow."""
    for before, after in itertools.pairwise(history):
        if before.state is not after.state and (before.state, after.state) not in EDGES:
            return before, after
    return None


def check_history(config: Config, history: Sequence[Checkpoint]) -> None:
    """Refuse (exit 3) a checkpoint history the move could not have written."""
    step = impossible_step(history)
    if step is None:
        return
    before, after = step
    raise SafetyRefusal(
        f"refusing to resume move {config.move.name!r}: its checkpoint rows go from {before.state.value} "
        f"(row {before.id}, written by {before.writer or 'unknown'}) to {after.state.value} (row "
        f"{after.id}, written by {after.writer or 'unknown'}), a step no tablemover run takes. "
        "Someone else wrote to the checkpoint table: find out who (the server's general or audit "
        "log), remove the rows that are not the move's, and run again. Nothing was done."
    )


async def check_source_matches(config: Config, state: State) -> None:
    """Refuse (exit 3) a state that says the source tables are renamed when the source disagrees."""
    if state not in SOURCE_RENAMED:
        return
    inspection = await inspect_source(config)
    if inspection.verdict is SourceTables.RENAMED:
        return
    raise SafetyRefusal(
        f"refusing to resume move {config.move.name!r} in {state.value}: that state means the source "
        f"tables were renamed away, but the source shows otherwise ({inspection.describe()}). "
        "Acting on it would point the application at the target while the source still takes "
        "writes. The checkpoint row was not written by this move's cutover, or the tables were "
        "renamed back by hand: find out which, then make the source and the checkpoint agree. "
        "Nothing was done."
    )
