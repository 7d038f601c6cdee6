"""Operator commands that work on the checkpoint and the servers without a running daemon."""

from __future__ import annotations

from tablemover import checkpoint as cpstore
from tablemover.config import Config
from tablemover.db import close, connect, execute, query
from tablemover.errors import MoveFailed, SafetyRefusal
from tablemover.machine import State
from tablemover.schema import table_exists
from tablemover.sql import qualified


async def abort_offline(config: Config) -> str:
    """Record ABORTED for a move that is not running (PREPARED or COPYING only)."""
    target = await connect(config.target, "target", autocommit=False)
    try:
        db = config.move.effective_target_database
        cp = await cpstore.latest(target, db, config.move.name)
        if cp is None:
            raise MoveFailed(f"move {config.move.name!r} has no checkpoint on the target: nothing to abort")
        if cp.state is State.ABORTED:
            return f"move {config.move.name} is already ABORTED"
        if cp.state not in (State.PREPARED, State.COPYING):
            raise SafetyRefusal(
                f"refusing to abort move {config.move.name!r} in {cp.state.value}: from CUTOVER_STARTED "
                "on the source tables may already be renamed, so the move can only go forward "
                "(`tablemover run`)."
            )
        await cpstore.write(target, db, cp.evolve(state=State.ABORTED, kind=cpstore.KIND_TRANSITION))
        await target.commit()
        return f"move {config.move.name} ABORTED in {cp.state.value}; `tablemover run` resumes it"
    finally:
        await close(target)


async def cleanup(config: Config, *, drop_source: bool) -> list[str]:
    """After DONE: drop the move's checkpoint rows, the table when empty, optionally the old tables."""
    done: list[str] = []
    target = await connect(config.target, "target")
    db = config.move.effective_target_database
    try:
        cp = await cpstore.latest(target, db, config.move.name)
        if cp is None:
            return [f"move {config.move.name} has no checkpoint rows: nothing to clean up"]
        if cp.state is not State.DONE:
            raise SafetyRefusal(
                f"refusing to clean up move {config.move.name!r} in {cp.state.value}: its checkpoint is how "
                "it resumes. Finish it (`tablemover run`) or abort it first."
            )
        table = qualified(db, cpstore.TABLE)
        deleted = await execute(target, f"DELETE FROM {table} WHERE move_name=%s", (config.move.name,))
        done.append(f"deleted {deleted} checkpoint rows of move {config.move.name}")
        if not await query(target, f"SELECT 1 FROM {table} LIMIT 1"):
            await execute(target, f"DROP TABLE {table}")
            done.append(f"dropped {db}.{cpstore.TABLE} (no other move uses it)")
    finally:
        await close(target)
    if drop_source:
        source = await connect(config.source, "source")
        try:
            for name in config.move.tables:
                renamed = config.move.renamed(name)
                if await table_exists(source, config.move.database, renamed):
                    await execute(source, f"DROP TABLE {qualified(config.move.database, renamed)}")
                    done.append(f"dropped source table {config.move.database}.{renamed}")
        finally:
            await close(source)
    else:
        done.append("kept the renamed source tables (use --drop-source to drop them)")
    return done
