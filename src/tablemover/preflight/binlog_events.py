"""Check: the source's settings do not write binlog events the move refuses (the courtesy check).

A MySQL source with ``binlog_row_value_options=PARTIAL_JSON`` logs JSON updates as diffs
(PARTIAL_UPDATE_ROWS_EVENT) and with ``binlog_transaction_compression=ON`` whole transactions as one
zstd payload (TRANSACTION_PAYLOAD_EVENT): the stream refuses both (events.py). Sessions can set
either, so the stream's refusal is the guard; this check only saves an operator from a move that
would stop at the first such write. MariaDB's ``log_bin_compress`` is fine: those events are
inflated and reproduced.
"""

from __future__ import annotations

from tablemover.db import query
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.preflight import Phase, PreflightContext, check

_SETTINGS = ("binlog_row_value_options", "binlog_transaction_compression", "log_bin_compress")
_RECONNECT = "then restart the writers' connections (sessions keep the value they started with)"


def binlog_event_problems(flavor: Flavor, settings: dict[str, str], where: str) -> list[str]:
    """Settings (name -> global value, as SHOW GLOBAL VARIABLES gives them) that write refused events."""
    if flavor is not Flavor.MYSQL:
        return []  # MariaDB's log_bin_compress is reproduced; the MySQL settings do not exist there
    problems = []
    options = settings.get("binlog_row_value_options", "").strip()
    if "PARTIAL_JSON" in options.upper():
        problems.append(
            f"{where}: binlog_row_value_options is {options}: UPDATEs of JSON columns are logged as "
            "diffs (PARTIAL_UPDATE_ROWS_EVENT), which tablemover does not reproduce. "
            f"SET GLOBAL binlog_row_value_options='' (and in the server config), {_RECONNECT}."
        )
    compression = settings.get("binlog_transaction_compression", "").strip().upper()
    if compression in ("ON", "1"):
        problems.append(
            f"{where}: binlog_transaction_compression is ON: transactions are logged as one zstd payload "
            "(TRANSACTION_PAYLOAD_EVENT), which tablemover does not reproduce. "
            f"SET GLOBAL binlog_transaction_compression=OFF (and in the server config), {_RECONNECT}."
        )
    return problems


@check(Phase.SERVERS, "binlog_events")
async def source_binlog_events(ctx: PreflightContext) -> list[str]:
    """Refuse a source whose global settings write events the stream refuses."""
    names = ", ".join(f"'{n}'" for n in _SETTINGS)
    rows = await query(ctx.source, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    settings = {str(r[0]).lower(): str(r[1] or "") for r in rows}
    if settings.get("log_bin_compress", "").upper() == "ON":
        event("log_bin_compress=ON on the source: compressed events are inflated and reproduced")
    return binlog_event_problems(ctx.source_info.flavor, settings, ctx.source_address)
