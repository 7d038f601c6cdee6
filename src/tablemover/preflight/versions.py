"""Check: both servers run a version tablemover supports (MariaDB 10.6+, MySQL 8.0+)."""

from __future__ import annotations

from tablemover.db import ServerInfo
from tablemover.flavor import Flavor
from tablemover.preflight import Phase, PreflightContext, check

# The oldest release of each flavour we test the binlog protocol, GTID handling and locking reads
# against. Older MariaDB lacks the BINLOG MONITOR privilege split and some GTID functions; MySQL 5.7
# lacks `FOR SHARE` and is past end of life.
MINIMUM = {Flavor.MARIADB: (10, 6), Flavor.MYSQL: (8, 0)}


def is_supported(info: ServerInfo) -> bool:
    """Whether tablemover supports the server's flavour and version."""
    return (info.version.major, info.version.minor) >= MINIMUM[info.flavor]


def version_problems(info: ServerInfo, where: str) -> list[str]:
    """The problem with ``info``'s version, if any; ``where`` names the server ("source HOST:PORT")."""
    if is_supported(info):
        return []
    return [
        f"{where} runs {info.version} ({info.version.raw}); tablemover supports MariaDB 10.6 or newer "
        "and MySQL 8.0 or newer. Upgrade the server or point the config at a supported one."
    ]


@check(Phase.SERVERS, "versions")
async def supported_versions(ctx: PreflightContext) -> list[str]:
    """Refuse unsupported source or target versions."""
    return version_problems(ctx.source_info, ctx.source_address) + version_problems(
        ctx.target_info, ctx.target_address
    )
