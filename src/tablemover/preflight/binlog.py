"""Check: the source writes a binlog tablemover can stream (on, ROW, FULL images, GTIDs)."""

from __future__ import annotations

from tablemover.db import ServerInfo
from tablemover.flavor import Flavor
from tablemover.preflight import Phase, PreflightContext, check

# Session values are copied from the global ones when a connection opens, so a client that connected
# before the global change keeps writing in the old format until it reconnects.
_RECONNECT = "then restart the writers' connections (sessions keep the value they started with)"


def binlog_problems(info: ServerInfo, where: str) -> list[str]:
    """Every binlog setting of the source that stops tablemover; ``where`` names the server."""
    problems: list[str] = []
    if not info.log_bin:
        problems.append(
            f"{where}: binary logging is off (log_bin=0); tablemover reads every change from the binlog. "
            "Enable it in the server config (log_bin=<basename>, binlog_format=ROW, binlog_row_image=FULL"
            + (", gtid_mode=ON, enforce_gtid_consistency=ON" if info.flavor is Flavor.MYSQL else "")
            + ") and restart the server."
        )
    if info.binlog_format != "ROW":
        problems.append(
            f"{where}: binlog_format is {info.binlog_format}; tablemover needs ROW, because it applies "
            "row images, not statements. Set binlog_format=ROW in the server config (and "
            f"SET GLOBAL binlog_format='ROW'), {_RECONNECT}."
        )
    if info.binlog_row_image != "FULL":
        problems.append(
            f"{where}: binlog_row_image is {info.binlog_row_image}; tablemover needs FULL, because it "
            "upserts whole rows and finds them by key in the before image. Set binlog_row_image=FULL "
            f"in the server config (and SET GLOBAL binlog_row_image='FULL'), {_RECONNECT}."
        )
    # MariaDB always writes GTIDs into its binlog; only MySQL can run without them.
    if info.flavor is Flavor.MYSQL and (info.gtid_mode or "").upper() != "ON":
        problems.append(
            f"{where}: gtid_mode is {info.gtid_mode or 'unknown'}; tablemover needs ON, because its "
            "checkpoints and the cutover's drain position are GTID sets. Switch it on online, one step "
            "at a time: SET GLOBAL enforce_gtid_consistency=ON; SET GLOBAL gtid_mode=OFF_PERMISSIVE; "
            "SET GLOBAL gtid_mode=ON_PERMISSIVE; wait until Ongoing_anonymous_transaction_count is 0; "
            "SET GLOBAL gtid_mode=ON; and set both in the server config."
        )
    return problems


@check(Phase.SERVERS, "binlog")
async def source_binlog(ctx: PreflightContext) -> list[str]:
    """Refuse a source whose binlog is off, not ROW/FULL, or (MySQL) without GTIDs."""
    return binlog_problems(ctx.source_info, ctx.source_address)
