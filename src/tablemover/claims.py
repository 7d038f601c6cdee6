"""A checkpoint row is a claim; the servers are the truth.

The checkpoint table sits where other accounts may be able to write (the target schema), so a
resume does not believe its newest row on its own word:

- the rows must tell a history the state machine could have written: every change of state between
  consecutive rows is one of ``machine.TRANSITIONS`` (a forged ``RENAMED`` after ``COPYING``, or a
  ``COPYING`` after ``DONE``, is not);
- every row must be written by the move's owner of its time: each daemon (or offline ``abort``)
  that takes the move's lock writes an owner row (``ownership.py``) before it writes anything
  else, and every row it writes carries the same ``writer`` (host, pid, version). So a
  transition or progress row must carry the writer of the newest owner row before it (by id:
  owner rows take no seq; a row inserted after an owner row gets a higher id, and a fenced daemon
  cannot commit a row inserted after another daemon took the lock, see ``ownership.py``). Rows
  before the first owner row (the first run's PREPARED rows, written before the table existed
  for an owner row to go in, and histories of the layout before owner rows) are accepted;
- a state that says the source tables are renamed away (from RENAMED until a rollback puts them
  back) must be what the source shows.

Any failing stops the run with exit 3 before anything is done on the row's word (no hook fired,
no table renamed or dropped): an operator must find out who wrote the row.

What these checks cannot see: the ``writer`` column is text that any account with INSERT on the
table can copy, so a forger who copies the owner's writer and keeps to the machine's edges passes
the first two; the source check (and, from the rollback window on, the window's own checks) then
decides for the states that act on the servers. Keeping the checkpoint where the application
cannot write (``state_database``) is what closes the rest.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from tablemover import checkpoint as cpstore
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


def foreign_row(
    history: Sequence[Checkpoint], owners: Sequence[Checkpoint]
) -> tuple[Checkpoint, Checkpoint] | None:
    """The first row (by id) whose writer is not the newest owner row's before it: (row, owner)."""
    by_id = sorted(owners, key=lambda o: o.id)
    ids = [o.id for o in by_id]
    for row in sorted(history, key=lambda r: r.id):
        before = bisect.bisect_left(ids, row.id)
        if before and by_id[before - 1].writer != row.writer:
            return row, by_id[before - 1]
    return None


async def check_recorded(config: Config, conn: Any, database: str) -> None:
    """Refuse (exit 3) the move's checkpoint on ``conn`` when the move could not have written it."""
    name = config.move.name
    history = await cpstore.history(conn, database, name)
    check_history(config, history, await cpstore.owners(conn, database, name))


def check_history(config: Config, history: Sequence[Checkpoint], owners: Sequence[Checkpoint] = ()) -> None:
    """Refuse (exit 3) a checkpoint history the move could not have written (states or writers)."""
    foreign = foreign_row(history, owners)
    if foreign is not None:
        row, owner = foreign
        raise SafetyRefusal(
            f"refusing to resume move {config.move.name!r}: checkpoint row {row.id} ({row.kind} "
            f"{row.state.value}, seq {row.seq or 'none'}) was written by {row.writer or 'unknown'!r}, "
            f"but the move's owner then was {owner.writer or 'unknown'!r} (owner row {owner.id}, "
            f"since {owner.created_at}), and only the owner writes a move's rows. Someone else wrote "
            "to the checkpoint table: find out who (the server's general or audit log), remove the "
            "rows that are not the move's, and run again. Nothing was done."
        )
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
