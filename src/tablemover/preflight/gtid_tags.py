"""Check: what the move does with the MySQL 8.3+ tagged GTIDs of the source (a report, and a guard).

A tagged GTID (``uuid:tag:n``, written by a session that ran ``SET gtid_next='AUTOMATIC:tag'``)
leaves its tag in ``gtid_executed`` for good. The move carries such a set everywhere it keeps one:
its own GTID parser reads tags (gtid.py), the checkpoint stores the set as text, and the binlog
dump request sends it in MySQL's tagged encoding (stream._DumpGtidSet). A *new* tagged transaction
during the move is a GTID_TAGGED_LOG_EVENT, which the stream refuses (exit 3, events.py): this
check says so up front when the source has used tags, and refuses a ``gtid_executed`` that this
move could not read back (which would otherwise stop the stream at its start).
"""

from __future__ import annotations

import logging

from tablemover import gtid
from tablemover.db import query_one
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check


def gtid_tag_report(flavor: Flavor, gtid_executed: str, where: str) -> tuple[list[str], str]:
    """(problems, note) for a source's ``gtid_executed``; the note is empty without tags.

    Pure: the check below reads the value. MariaDB has no tags (its GTIDs are domain-server-seq).
    """
    if flavor is not Flavor.MYSQL:
        return [], ""
    text = " ".join(gtid_executed.split())  # MySQL prints a newline after each comma
    try:
        executed = gtid.MySQLGtidSet.parse(text)
    except ValueError as exc:
        return [
            f"{where}: gtid_executed cannot be read as a GTID set ({exc}); the move keeps its "
            "position as such a set. Report the value (SELECT @@global.gtid_executed)."
        ], ""
    tags = sorted({source.partition(":")[2] for source in executed.sources if ":" in source})
    if not tags:
        return [], ""
    return [], (
        f"{where}: gtid_executed holds tagged GTIDs (tags {', '.join(tags)}). The move carries "
        "them in its position and checkpoints; but a new transaction with a tagged GTID during "
        "the move (a session with SET gtid_next='AUTOMATIC:<tag>' or '<uuid>:<tag>:<n>', which "
        "needs the TRANSACTION_GTID_TAG privilege) stops it with exit 3 before that transaction "
        "is applied, and the move then has to start over. Keep such sessions and tools off the "
        "source until the cutover."
    )


@check(Phase.SERVERS, "gtid_tags")
async def source_gtid_tags(ctx: PreflightContext) -> list[str]:
    """Report tagged GTIDs in a MySQL source's gtid_executed; refuse one the move cannot read."""
    if ctx.source_info.flavor is not Flavor.MYSQL:
        return []
    row = await query_one(ctx.source, "SELECT @@global.gtid_executed")
    problems, note = gtid_tag_report(
        ctx.source_info.flavor, str(row[0] or "") if row else "", ctx.source_address
    )
    if note:
        event(note, logging.WARNING)
    return problems
