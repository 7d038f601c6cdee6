"""Operator commands that work on the checkpoint and the servers without a running daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tablemover import checkpoint as cpstore
from tablemover import rangestore
from tablemover import replicas as heartbeat
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.cutover import SourceTables, inspect_source
from tablemover.db import close, connect, execute, query
from tablemover.errors import BadInput, MoveFailed, MoveOwned, SafetyRefusal
from tablemover.machine import PAST_POINT_OF_NO_RETURN, State
from tablemover.ownership import MoveLock, is_owned
from tablemover.schema import table_exists
from tablemover.sql import qualified


def recorded_tables(history: Sequence[Checkpoint]) -> list[str] | None:
    """The tables the move took on when it started: its PREPARED row's progress, in order.

    Every checkpoint layout has recorded them there, so moves started by older versions have it too.
    """
    prepared = next((r for r in history if r.state is State.PREPARED), None)
    return list(prepared.progress) if prepared is not None and prepared.progress else None


def recorded_renames(history: Sequence[Checkpoint]) -> tuple[str, dict[str, str]] | None:
    """(source database, {table: renamed name}) as the cutover recorded them, or None.

    Written with the intent (CUTOVER_STARTED) before the RENAME and again with RENAMED.
    """
    for row in reversed(history):
        renames = row.detail.get("renames")
        if isinstance(renames, dict) and renames:
            return str(row.detail.get("source_database") or ""), {str(k): str(v) for k, v in renames.items()}
    return None


def config_differences(
    config: Config, tables: Sequence[str], renames: tuple[str, dict[str, str]] | None = None
) -> list[str]:
    """How today's config differs from what the move recorded (empty: it names the same things)."""
    move = config.move
    found: list[str] = []
    if sorted(move.tables) != sorted(tables):
        found.append(f"tables: the config names {list(move.tables)}, the move recorded {list(tables)}")
    if renames is not None:
        database, names = renames
        if database and database != move.database:
            found.append(
                f"database: the config names {move.database!r}, the move renamed tables in {database!r}"
            )
        wanted = {t: move.renamed(t) for t in names}
        if wanted != names:
            found.append(
                f"renamed_table_format: the config's {move.renamed_table_format!r} names "
                f"{sorted(wanted.values())}, the cutover renamed to {sorted(names.values())}"
            )
    return found


def _refuse_changed_config(config: Config, command: str, differences: list[str]) -> BadInput:
    return BadInput(
        f"refusing to {command} move {config.move.name!r}: the config no longer names what the move "
        f"recorded ({'; '.join(differences)}). {command} acts only on the tables the move recorded; "
        "put the config back as it was when the move ran and try again. Nothing was changed."
    )


@asynccontextmanager
async def _owning(config: Config, refusal: str, *, record: bool = False) -> AsyncIterator[None]:
    """Hold the move's lock while an offline command changes the move.

    Checking that no daemon runs it is not enough: one could start between the check and the
    change. Holding the lock, a daemon starting meanwhile is the one refused (exit 2).
    ``refusal`` is the message when a daemon holds it, with ``{owner}`` for who that is.
    ``record`` writes this process's owner row first, as a command that writes checkpoint rows
    must: a row whose writer is not the newest owner's is refused as forged (claims.py).
    """
    lock = MoveLock(config)
    try:
        await lock.acquire(record=record, announce=False)
    except MoveOwned:
        owner = await is_owned(config) or "it stopped just now"
        raise MoveOwned(refusal.format(owner=owner)) from None
    try:
        yield
    finally:
        await lock.release()


async def abort_offline(config: Config) -> str:
    """Record ABORTED for a move that is not running (PREPARED or COPYING only)."""
    refusal = (
        f"move {config.move.name!r} is run by a daemon whose control socket is not here ({{owner}}): "
        "abort it on its host (`tablemover abort -c FILE` there); nothing was changed."
    )
    async with _owning(config, refusal, record=True):
        cp, previous = await record_abort(config)
    if cp is None:
        raise MoveFailed(f"move {config.move.name!r} has no checkpoint on the target: nothing to abort")
    if previous is State.ABORTED:
        return f"move {config.move.name} is already ABORTED"
    return f"move {config.move.name} ABORTED in {previous.value}; `tablemover run` resumes it"


async def record_abort(config: Config) -> tuple[Checkpoint | None, State]:
    """Write ABORTED for a move in PREPARED or COPYING: (the newest checkpoint, the state before).

    The caller makes sure no daemon runs the move (``abort_offline``), or is the daemon that owns
    it and has stopped its work (an abort that arrived between two attempts). A move with no
    checkpoint yet gives (None, PREPARED) and one already ABORTED is left as it is; from
    CUTOVER_STARTED on it refuses (exit 3).
    """
    target = await connect(config.target, "target", autocommit=False)
    try:
        db = await cpstore.locate_move(target, config.move)
        cp = await cpstore.latest(target, db, config.move.name)
        if cp is None or cp.state is State.ABORTED:
            return cp, cp.state if cp is not None else State.PREPARED
        if cp.state not in (State.PREPARED, State.COPYING):
            raise SafetyRefusal(
                f"refusing to abort move {config.move.name!r} in {cp.state.value}: from CUTOVER_STARTED "
                "on the source tables may already be renamed, so the move can only go forward "
                "(`tablemover run`)."
            )
        await cpstore.upgrade_table(target, db)  # a move started by an earlier version
        aborted = cp.evolve(state=State.ABORTED, kind=cpstore.KIND_TRANSITION, detail={})
        aborted = await cpstore.write(target, db, aborted)
        await target.commit()
        return aborted, cp.state
    finally:
        await close(target)


async def cleanup(config: Config, *, drop_source: bool) -> list[str]:
    """After DONE (or ROLLED_BACK): drop the move's checkpoint rows, the table when empty, the
    rollback window's checkpoint on the source, optionally the old source tables."""
    done: list[str] = []
    target = await connect(config.target, "target")
    db = config.move.effective_target_database
    # What --drop-source drops: the names the cutover recorded; today's config only for a move whose
    # checkpoint rows an earlier plain cleanup removed (then the source inspection vouches for it).
    to_drop = (config.move.database, {t: config.move.renamed(t) for t in config.move.tables})
    try:
        state_db = await cpstore.locate_move(target, config.move)
        cp = await cpstore.latest(target, state_db, config.move.name)
        if cp is not None and cp.state is State.ROLLED_BACK and drop_source:
            raise BadInput(
                f"move {config.move.name!r} was rolled back: the source tables are the live ones again, so "
                "there are no renamed source tables to drop. Run `tablemover cleanup` without --drop-source."
            )
        if cp is None and not drop_source:
            return [f"move {config.move.name} has no checkpoint rows: nothing to clean up"]
        if cp is None:
            # An earlier plain cleanup removed the checkpoint; the source still shows whether
            # the move cut over (every table renamed away), which is what makes dropping safe.
            inspection = await inspect_source(config)
            if inspection.verdict is not SourceTables.RENAMED:
                raise SafetyRefusal(
                    f"refusing to drop source tables of move {config.move.name!r}: there is no "
                    "checkpoint, and the source does not show a finished cutover "
                    f"({inspection.describe()})."
                )
            done.append(f"move {config.move.name} has no checkpoint rows left (cleaned up before)")
        elif cp.state not in (State.DONE, State.ROLLED_BACK):
            raise SafetyRefusal(
                f"refusing to clean up move {config.move.name!r} in {cp.state.value}: its checkpoint is how "
                "it resumes. Finish it (`tablemover run`), or throw the unfinished move away with "
                "`tablemover discard -c FILE --yes`."
            )
        else:
            rows = await cpstore.history(target, state_db, config.move.name)
            renames = recorded_renames(rows)
            differences = config_differences(config, recorded_tables(rows) or config.move.tables, renames)
            if differences:
                raise _refuse_changed_config(config, "clean up", differences)
            if renames is not None:
                to_drop = renames
            feeds = {str(r.detail["feed"]) for r in rows if isinstance(r.detail.get("feed"), str)}
            done.extend(await _drop_checkpoint_rows(target, state_db, config.move.name))
            if feeds:
                done.extend(await _drop_reverse_checkpoints(config, feeds))
            if cp.state is State.ROLLED_BACK:
                kept = ", ".join(f"{db}.{config.move.rolledback(t)}" for t in config.move.tables)
                done.append(f"kept the target's rolled-back tables {kept}; drop them when no longer needed")
    finally:
        await close(target)
    if drop_source:
        source = await connect(config.source, "source")
        source_db, drop_names = to_drop
        try:
            for renamed in drop_names.values():
                if await table_exists(source, source_db, renamed):
                    await execute(source, f"DROP TABLE {qualified(source_db, renamed)}")
                    done.append(f"dropped source table {source_db}.{renamed}")
        finally:
            await close(source)
    else:
        done.append("kept the renamed source tables (use --drop-source to drop them)")
    return done


async def discard(config: Config, *, yes: bool) -> list[str]:
    """Throw away an unfinished move: its target tables and checkpoint rows (before RENAMED only).

    Without ``yes`` only says what it would do. Refuses while a daemon owns the move, once the
    source tables may be renamed (from RENAMED on, or when the source shows renamed tables), and
    for a move that never started here.
    """
    refusal = (
        f"refusing to discard move {config.move.name!r}: a daemon is running it ({{owner}}). Stop it "
        "first (`tablemover abort -c FILE` or `systemctl stop`), then discard."
    )
    async with _owning(config, refusal):
        return await _discard(config, yes=yes)


async def _discard(config: Config, *, yes: bool) -> list[str]:
    db = config.move.effective_target_database
    target = await connect(config.target, "target")
    try:
        state_db = await cpstore.locate_move(target, config.move)
        rows = await cpstore.history(target, state_db, config.move.name)
        if not rows:
            return [f"move {config.move.name} has no checkpoint on the target: nothing to discard"]
        state = rows[-1].state
        if state in PAST_POINT_OF_NO_RETURN:
            raise SafetyRefusal(
                f"refusing to discard move {config.move.name!r} in {state.value}: the source tables are "
                "renamed and the application may already write to the target tables. Finish the move "
                "(`tablemover run`) instead."
            )
        if state in (State.CUTOVER_STARTED, State.FAILED):
            inspection = await inspect_source(config)
            if inspection.verdict is not SourceTables.ORIGINAL:
                raise SafetyRefusal(
                    f"refusing to discard move {config.move.name!r}: the source does not show all the "
                    f"original tables ({inspection.describe()}), so the cutover may have renamed "
                    "them. Resolve that first (`tablemover run` finishes an interrupted cutover)."
                )
        tables = recorded_tables(rows)
        if tables is None:
            raise SafetyRefusal(
                f"refusing to discard move {config.move.name!r}: its checkpoint rows do not record which "
                "tables it took on (no PREPARED row), so there is no plan that is known to be safe. "
                f"Drop the target tables it created yourself and delete its rows from "
                f"{state_db}.{cpstore.TABLE}."
            )
        differences = config_differences(config, tables)
        if differences:
            raise _refuse_changed_config(config, "discard", differences)
        prepared = next(r for r in rows if r.state is State.PREPARED)
        # Older moves recorded no created_tables: then none counts as created, and every table is
        # emptied rather than dropped (preflight found each one empty before the move filled it).
        created = set(prepared.detail.get("created_tables") or [])
        plan = []
        for table in tables:
            if await table_exists(target, db, table):
                verb = "drop" if table in created else "empty (it existed before the move)"
                plan.append((table, verb))
        lines = [f"{verb} target table {db}.{table}" for table, verb in plan]
        lines.append(f"delete the checkpoint rows of move {config.move.name} from {state_db}.{cpstore.TABLE}")
        if not yes:
            return [
                f"move {config.move.name} is {state.value}; `tablemover discard --yes` would:",
                *[f"  {line}" for line in lines],
                "nothing was changed; pass --yes to do it",
            ]
        done = []
        for table, verb in plan:
            if verb == "drop":
                await execute(target, f"DROP TABLE {qualified(db, table)}")
                done.append(f"dropped target table {db}.{table}")
            else:
                await execute(target, f"TRUNCATE TABLE {qualified(db, table)}")
                done.append(f"emptied target table {db}.{table} (it existed before the move)")
        done.extend(await _drop_checkpoint_rows(target, state_db, config.move.name))
        done.append(f"move {config.move.name} discarded; `tablemover run -c FILE` starts it from scratch")
        return done
    finally:
        await close(target)


async def _drop_checkpoint_rows(conn: object, db: str, move_name: str, what: str = "move") -> list[str]:
    table = qualified(db, cpstore.TABLE)
    deleted = await execute(conn, f"DELETE FROM {table} WHERE move_name=%s", (move_name,))
    done = [f"deleted {deleted} checkpoint rows of {what} {move_name}"]
    if not await query(conn, f"SELECT 1 FROM {table} LIMIT 1"):
        await execute(conn, f"DROP TABLE {table}")
        done.append(f"dropped {db}.{cpstore.TABLE} (no other move uses it)")
    # A parallel copy's ranges (tablemover.rangestore) live beside the checkpoint, on the target.
    if await table_exists(conn, db, rangestore.TABLE):
        await execute(conn, rangestore.delete_move_sql(db), (move_name,))
        if not await query(conn, f"SELECT 1 FROM {qualified(db, rangestore.TABLE)} LIMIT 1"):
            await execute(conn, f"DROP TABLE {qualified(db, rangestore.TABLE)}")
            done.append(f"dropped {db}.{rangestore.TABLE} (no other move uses it)")
    # The replica heartbeat (tablemover.replicas) lives beside the checkpoint.
    return done + await _drop_heartbeat(conn, db, move_name)


async def _drop_heartbeat(conn: object, db: str, move_name: str) -> list[str]:
    """This move's heartbeat rows in ``db`` (both sides); the table too when no other move uses it."""
    if not await table_exists(conn, db, heartbeat.TABLE):
        return []
    beats = qualified(db, heartbeat.TABLE)
    await execute(conn, f"DELETE FROM {beats} WHERE move=%s", (move_name,))
    if await query(conn, f"SELECT 1 FROM {beats} LIMIT 1"):
        return []
    await execute(conn, f"DROP TABLE {beats}")
    return [f"dropped {db}.{heartbeat.TABLE} (no other move uses it)"]


async def _drop_reverse_checkpoints(config: Config, feeds: set[str]) -> list[str]:
    """The rollback window's checkpoint rows on the source (one feed name per window)."""
    source = await connect(config.source, "source")
    move = config.move
    try:
        done: list[str] = []
        for feed in sorted(feeds):
            db = await cpstore.locate(source, move.state_database, move.database, feed)
            if await cpstore.has_rows(source, db, feed):
                done.extend(await _drop_checkpoint_rows(source, db, feed, "rollback window feed"))
            # The source-side heartbeat ([throttle] source_replicas) is keyed by the move's name.
            done.extend(await _drop_heartbeat(source, db, move.name))
        return done
    finally:
        await close(source)
