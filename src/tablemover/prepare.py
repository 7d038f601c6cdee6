"""PREPARED, the first phase of a new move: the target database, tables and checkpoint table, and
the source position the binlog stream will start from."""

from __future__ import annotations

from typing import Any

from tablemover import checkpoint as cpstore
from tablemover import indexes
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config
from tablemover.db import current_position, execute, query
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.machine import State
from tablemover.schema import TableSchema, table_exists
from tablemover.sql import quote_ident, target_create_statement


async def prepare(
    config: Config,
    flavor: Flavor,
    schemas: dict[str, TableSchema],
    source: Any,
    target: Any,
    state_db: str,
) -> Checkpoint:
    """Create what the move needs on the target and commit its first checkpoint (PREPARED) in
    ``state_db``."""
    target_db = config.move.effective_target_database
    # Only when it is missing: CREATE DATABASE needs CREATE on the whole schema even with IF NOT
    # EXISTS, and a user with only the table-level grants of an existing schema does not hold it.
    schemata = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s"
    if not await query(target, schemata, (target_db,)):
        await execute(target, f"CREATE DATABASE IF NOT EXISTS {quote_ident(target_db)}")
    await cpstore.ensure_table(target, state_db)
    created = []
    for table, schema in schemas.items():
        if not await table_exists(target, target_db, table):
            # With defer_secondary_indexes, without its non-unique indexes (tablemover.indexes).
            create = indexes.create_statement(config, schema)
            await execute(target, target_create_statement(create, target_db))
            created.append(table)
            event("created target table", table=f"{target_db}.{table}")
    # Rule 1: the stream starts at a position captured before the first chunk is read.
    start = await current_position(source, flavor)
    cp = Checkpoint(
        move_name=config.move.name,
        state=State.PREPARED,
        kind=cpstore.KIND_TRANSITION,
        applied_gtid=start,
        progress={t: TableProgress() for t in config.move.tables},
        # `discard` drops the tables the move created and only empties those it found.
        detail={
            "flavor": flavor.value,
            "created_tables": created,
            **await indexes.prepared_detail(config, schemas, target),
        },
    )
    cp = await cpstore.write(target, state_db, cp)
    await target.commit()
    event("prepared move", start_gtid=start, tables=",".join(config.move.tables))
    return cp
