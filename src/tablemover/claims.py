"""A checkpoint row is a claim; the servers are the truth.

The checkpoint table may sit where other accounts can write (a move an earlier version started
keeps it in the target schema; an operator may grant more than asked on the state schema), so a
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
  back) must be what the source shows;
- in the rollback window the target is asked too (:func:`check_target_matches`): in WINDOW_OPEN
  its tables are in place, from ROLLBACK_RENAMED on the rollback's RENAME took them away. And the
  window's feed checkpoint, which lives on the *source* (``window.py``) where other accounts may
  write as well, must be one the move's daemons wrote (:func:`check_feed`): its rows are only ever
  WINDOW_OPEN (the move's state is kept on the target), written by a daemon that owned the move,
  and its position lies between the window's start and what the target has written.

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
from tablemover.cutover import SourceTables, inspect, inspect_source
from tablemover.db import close, connect, current_position
from tablemover.errors import SafetyRefusal
from tablemover.flavor import Flavor
from tablemover.gtid import covers, parse_position
from tablemover.machine import REVERSE_FEED, TRANSITIONS, State
from tablemover.rollback import rollback_renaming
from tablemover.window import Window, feed_state_database

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


async def check_resume(
    config: Config, cp: Checkpoint, target: Any, target_flavor: Flavor, database: str
) -> None:
    """Refuse (exit 3) to resume from ``cp`` unless its history, the source and the target agree.

    ``target`` is a connection to the target; ``database`` where the move's checkpoint is.
    """
    await check_recorded(config, target, database)
    await check_source_matches(config, cp.state)
    await check_target_matches(config, cp.state)
    await check_feed(config, cp, target, target_flavor)


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


# Window states in which the rollback's RENAME took the target's tables away (ROLLBACK_STARTED is
# left out: the RENAME may or may not have run, and resolve_rollback_started inspects that itself).
TARGET_ROLLED_AWAY = frozenset({State.ROLLBACK_RENAMED, State.ROLLBACK_DRAINED})


async def check_target_matches(config: Config, state: State) -> None:
    """Refuse (exit 3) a window state the target's tables contradict.

    WINDOW_OPEN says the application writes to the target's tables under their names; from
    ROLLBACK_RENAMED on they are renamed away (``rolledback_table_format``). A resume acting on a
    ROLLBACK_RENAMED the target never saw would give the source its tables back while the target
    still takes writes: both sides writable.
    """
    if state is State.WINDOW_OPEN:
        expected = SourceTables.ORIGINAL
    elif state in TARGET_ROLLED_AWAY:
        expected = SourceTables.RENAMED
    else:
        return
    inspection = await inspect(rollback_renaming(config, ""))
    if inspection.verdict is expected:
        return
    means = (
        "the target's tables are still in place (no rollback began)"
        if expected is SourceTables.ORIGINAL
        else "the rollback renamed the target's tables away"
    )
    raise SafetyRefusal(
        f"refusing to resume move {config.move.name!r} in {state.value}: that state means {means}, but "
        f"the target shows otherwise ({inspection.describe()}). Acting on it could leave both sides "
        "writable. The checkpoint row was not written by this move, or tables were renamed by hand: "
        "find out which, then make the target and the checkpoint agree. Nothing was done."
    )


def feed_problem(
    rows: Sequence[Checkpoint],
    window: Window,
    writers: set[str],
    target_position: str,
    flavor: Flavor,
) -> str:
    """What is wrong with a window's feed checkpoint rows (oldest first), "" when nothing is.

    Pure, for the rules of :func:`check_feed`.
    """
    if not rows:
        return "has no rows, although the window created them when it opened"
    for row in rows:
        if row.state is not State.WINDOW_OPEN:
            return (
                f"has row {row.id} in state {row.state.value}, but a feed's rows are only ever "
                "WINDOW_OPEN (the move's state is kept on the target)"
            )
        if row.writer not in writers:
            return f"has row {row.id} written by {row.writer or 'unknown'!r}, which never owned the move"
    newest = max(rows, key=lambda r: (r.seq, r.id))
    try:
        applied = parse_position(flavor, newest.applied_gtid)
        start = parse_position(flavor, window.reverse_from)
        written = parse_position(flavor, target_position)
    except ValueError as exc:
        return f"has row {newest.id} with a position that cannot be read ({exc})"
    if not covers(applied, start):
        return (
            f"has row {newest.id} saying the feed applied {newest.applied_gtid!r}, before the window's "
            f"start {window.reverse_from!r}"
        )
    if not covers(written, applied):
        return (
            f"has row {newest.id} saying the feed applied {newest.applied_gtid!r}, beyond what the "
            f"target has written ({target_position!r})"
        )
    return ""


async def check_feed(config: Config, cp: Checkpoint, target: Any, target_flavor: Flavor) -> None:
    """Refuse (exit 3) a rollback window whose feed checkpoint on the source the move did not write.

    The reverse feed resumes from the newest of those rows: a forged one could make it skip the
    application's writes on the way back (lost on a rollback) or take a state for the move's.
    ``target`` is a connection to the target, where the move's own rows name its owners.
    """
    if cp.state not in REVERSE_FEED:
        return
    window = Window.from_checkpoint(cp)
    if window is None:
        return  # the daemon refuses a window state without its facts itself (rollback.WindowPhases)
    name = config.move.name
    database = await cpstore.locate_move(target, config.move)
    own = [*await cpstore.history(target, database, name), *await cpstore.owners(target, database, name)]
    position = await current_position(target, target_flavor)
    source = await connect(config.source, "source")
    try:
        feed_db = await feed_state_database(config, source, window)
        rows = await cpstore.history(source, feed_db, window.feed_name)
    finally:
        await close(source)
    problem = feed_problem(rows, window, {r.writer for r in own}, position, target_flavor)
    if not problem:
        return
    raise SafetyRefusal(
        f"refusing to resume move {name!r} in {cp.state.value}: the rollback window's feed checkpoint "
        f"on the source ({feed_db}.{cpstore.TABLE}, rows of {window.feed_name!r}) "
        f"{problem}. The reverse feed resumes from it, so acting on it could lose or replay the "
        "application's writes on the way back. Someone else wrote to the source's checkpoint table: "
        "find out who (the server's general or audit log), remove the rows that are not the move's, "
        "and run again. Nothing was done."
    )
