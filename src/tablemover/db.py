"""The one way tablemover opens and uses a server connection.

All sessions use UTC and utf8mb4 so that values read from the source and written to the target
mean the same thing (spec rule 8). Connection failures become :class:`ConnectError` with a message
that names the server and the likely fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncmy.connection
from asyncmy.constants import FIELD_TYPE
from asyncmy.converters import conversions
from asyncmy.errors import MySQLError, OperationalError

from tablemover import tls
from tablemover.config import ServerSection
from tablemover.errors import MoveFailed
from tablemover.flavor import Flavor, ServerVersion, parse_version

Row = tuple[Any, ...]

# The writer stores every value exactly as the source has it, or fails. STRICT_ALL_TABLES turns
# truncation and out-of-range conversions into errors (the writer also refuses the ones reported
# only as notes). NO_AUTO_VALUE_ON_ZERO keeps an explicit id 0 rather than inventing an
# AUTO_INCREMENT value; NO_ZERO_DATE / NO_ZERO_IN_DATE stay off, so a '0000-00-00' or '2024-05-00'
# the source holds is stored as is; ALLOW_INVALID_DATES stores a '2024-02-30' that a source running
# with it holds (it checks only month 1-12 and day 1-31), where strict mode would reject it.
WRITER_SQL_MODE = "STRICT_ALL_TABLES,ALLOW_INVALID_DATES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

ER_ACCESS_DENIED = 1045
ER_DBACCESS_DENIED = 1044
# A statement refused for a missing privilege: on a database, a table, a column, or a global one.
ACCESS_DENIED = frozenset({ER_DBACCESS_DENIED, 1142, 1143, 1227})
ER_BAD_DB = 1049
ER_ACCOUNT_LOCKED_MARIADB = 4151
ER_ACCOUNT_LOCKED_MYSQL = 3118
CR_CONN_HOST_ERROR = 2003
CR_CONNECTION_ERROR = 2002
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
ER_NO_SUCH_TABLE = 1146
ER_TABLE_EXISTS = 1050


# Copying reads DATE/DATETIME/TIMESTAMP as the server's text: exact to the microsecond and valid for
# values Python's datetime cannot hold ('0000-00-00', which asyncmy fails to convert mid-result).
_TEMPORAL_AS_TEXT = {
    **conversions,
    FIELD_TYPE.DATE: str,
    FIELD_TYPE.DATETIME: str,
    FIELD_TYPE.TIMESTAMP: str,
    FIELD_TYPE.NEWDATE: str,
}


class ConnectError(MoveFailed):
    """A server could not be reached or refused our credentials."""


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver exception, if it carries one."""
    if isinstance(exc, MySQLError) and exc.args and isinstance(exc.args[0], int):
        return int(exc.args[0])
    return None


_CLIENT_MYSQL = 1  # capability bit 0: a MySQL client; a MariaDB client clears it to send extended caps
_MARIADB_BULK_OPERATIONS = 1 << 2  # MARIADB_CLIENT_STMT_BULK_OPERATIONS, in the extended capabilities

# asyncmy ships no annotations for its compiled Connection; subclass it as what mypy sees: Any.
_AsyncmyConnection: Any = asyncmy.connection.Connection


class _Connection(_AsyncmyConnection):  # type: ignore[misc]
    """asyncmy's connection with the mysql client's answer to a server that does not offer TLS.

    Given an SSL context, asyncmy starts the TLS upgrade whether or not the server's handshake
    offers it, and the server then drops the connection with an unhelpful error. Here the offer
    is checked first, as libmysqlclient and PyMySQL do: ``preferred`` goes on in plain text, every
    other mode is refused with error 2026 (which :func:`tls.describe_tls_failure` explains).
    """

    tm_tls_fallback = False  # set per connection: tls_mode = "preferred"
    tm_tls_request_patched = False  # the TLS request carried MariaDB's extended capabilities
    _tm_tls_request_next = False  # the next packet written is the TLS request
    _ssl_context: Any  # asyncmy's attributes this class reads and writes
    server_capabilities: int
    _client_flag: int
    _mariadb_ext_caps: int
    _bulk_supported: bool

    async def _request_authentication(self) -> Any:
        if self._ssl_context is not None and not self.server_capabilities & tls.CLIENT_SSL:
            if not self.tm_tls_fallback:
                raise OperationalError(tls.CR_SSL_CONNECTION_ERROR, "the server does not offer TLS")
            self._ssl_context = None
            self._client_flag &= ~tls.CLIENT_SSL
        self._tm_tls_request_next = self._ssl_context is not None and bool(
            self._mariadb_ext_caps & _MARIADB_BULK_OPERATIONS
        )
        return await super()._request_authentication()

    def write_packet(self, payload: bytes) -> None:
        """Send a packet; the TLS request gets MariaDB's extended capabilities.

        A MariaDB server takes the client's capabilities from the first packet, which under TLS
        is the 32-byte TLS request. asyncmy 0.2.18 writes it with the MySQL-client bit set and no
        extended capabilities (it adds them only to the login packet that follows), so the server
        would refuse COM_STMT_BULK_EXECUTE, the copy's fast path, on every encrypted connection.
        This writes the request as MariaDB's protocol defines it: CLIENT_MYSQL cleared and the
        extended capabilities in its last four bytes, the same as the login packet will say.
        """
        if self._tm_tls_request_next:
            self._tm_tls_request_next = False
            if len(payload) == 32:
                flags = int.from_bytes(payload[:4], "little") & ~_CLIENT_MYSQL
                payload = (
                    flags.to_bytes(4, "little")
                    + payload[4:28]
                    + _MARIADB_BULK_OPERATIONS.to_bytes(4, "little")
                )
                self.tm_tls_request_patched = True
        super().write_packet(payload)


async def connect(
    server: ServerSection,
    role: str,
    *,
    database: str | None = None,
    autocommit: bool = True,
    sql_mode: str | None = None,
    binary_prefix: bool = False,
    temporal_as_text: bool = False,
    client_flag: int = 0,
    connection: str = "sql",
) -> Any:
    """Open a connection to ``server``; ``role`` ("source"/"target") serves the messages.

    ``connection`` names what the connection is for (``copy``, ``writer``, ``lock``, ...) in the
    TLS state `status` shows. TLS is set up from the server section by :mod:`tablemover.tls`;
    this function and :func:`tls.pymysql_connector` are the only ways tablemover connects.
    """
    ssl_context = tls.build_context(server)
    kwargs: dict[str, Any] = {
        "user": server.user,
        "password": server.resolved_password(),
        "database": database,
        "charset": "utf8mb4",
        "autocommit": autocommit,
        "connect_timeout": server.connect_timeout_s,
        "program_name": "tablemover",
        # Writers send bytes as _binary'...' so the server stores them unconverted in any charset.
        "binary_prefix": binary_prefix,
        "client_flag": client_flag,
        "ssl": ssl_context,
    }
    if temporal_as_text:
        kwargs["conv"] = _TEMPORAL_AS_TEXT
    if server.socket:
        kwargs["unix_socket"] = server.socket
    else:
        kwargs["host"] = server.host
        kwargs["port"] = server.port
    conn = _Connection(**kwargs)
    conn.tm_tls_fallback = server.tls_mode == "preferred"
    try:
        await conn.connect()
    except (OperationalError, OSError, TimeoutError) as exc:
        conn.close()
        raise ConnectError(_describe_connect_failure(server, role, exc)) from exc
    state = tls.asyncmy_state(server, conn)
    try:
        tls.require_outcome(server, state, role)
    except tls.TlsSetupError:
        conn.close()
        raise
    if state.encrypted and conn._bulk_supported and not conn.tm_tls_request_patched:
        # The TLS request went out without MariaDB's extended capabilities (see _Connection), so
        # the server answers a bulk batch with error 1295. Saying so up front sends bulk.py down
        # its text path (NotSupportedError, before any I/O): slower, same rows.
        conn._bulk_supported = False
    tls.observe(role, connection, state)
    settings = "SET SESSION time_zone='+00:00'"
    if sql_mode is not None:
        settings += f", sql_mode='{sql_mode}'"
    async with conn.cursor() as cur:
        await cur.execute(settings)
    return conn


def _tls_login_hint(server: ServerSection, role: str) -> str:
    # The server answers "access denied" also when the account needs what this connection lacks:
    # TLS (require_secure_transport=ON, REQUIRE SSL) or a client certificate (REQUIRE X509/SUBJECT).
    if server.socket:
        return ""
    if server.tls_mode == "disabled":
        return (
            f" If the server has require_secure_transport=ON or the user REQUIRE SSL, set [{role}] "
            'tls_mode (e.g. "verify_identity").'
        )
    if not server.tls_cert:
        return (
            f" If the user is created REQUIRE X509 (or SUBJECT/ISSUER), set [{role}] tls_cert and tls_key "
            "to its client certificate."
        )
    return ""


def _describe_connect_failure(server: ServerSection, role: str, exc: BaseException) -> str:
    tls_failure = tls.describe_tls_failure(server, role, exc)
    if tls_failure is not None:
        return tls_failure
    code = error_code(exc)
    where = f"{role} server {server.address} as user {server.user!r}"
    if code in (ER_ACCESS_DENIED, ER_DBACCESS_DENIED):
        return (
            f"{where}: access denied ({exc.args[1] if len(exc.args) > 1 else exc}). "
            f"Check [{role}] user/password/password_file and that the user exists for this client host."
            + _tls_login_hint(server, role)
        )
    if code in (ER_ACCOUNT_LOCKED_MARIADB, ER_ACCOUNT_LOCKED_MYSQL):
        return f"{where}: the account is locked. Unlock it: ALTER USER ... ACCOUNT UNLOCK."
    if code == ER_BAD_DB:
        return f"{where}: {exc.args[1]}. Create the schema or fix the database name in [move]."
    detail = exc.args[1] if code is not None and len(exc.args) > 1 else str(exc) or type(exc).__name__
    return (
        f"cannot reach {where}: {detail}. Check that the server runs and that [{role}] host/port "
        "(or socket) are right and reachable from this host."
    )


async def query(conn: Any, sql: str, args: Sequence[Any] | None = None) -> list[Row]:
    """Run one statement and return all rows."""
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return list(await cur.fetchall())


async def query_one(conn: Any, sql: str, args: Sequence[Any] | None = None) -> Row | None:
    """Run one statement and return its first row, or None."""
    rows = await query(conn, sql, args)
    return rows[0] if rows else None


async def execute(conn: Any, sql: str, args: Sequence[Any] | None = None) -> int:
    """Run one statement and return the affected row count."""
    async with conn.cursor() as cur:
        return int(await cur.execute(sql, args))


async def close(conn: Any) -> None:
    """Close a connection politely, ignoring a connection that already died."""
    try:
        await conn.ensure_closed()
    except (MySQLError, OSError, AttributeError):
        conn.close()


@dataclass(frozen=True)
class ServerInfo:
    """Facts about a server that preflight, the stream and the cutover branch on."""

    version: ServerVersion
    server_id: int
    server_uuid: str | None
    hostname: str
    port: int
    datadir: str
    log_bin: bool
    binlog_format: str
    binlog_row_image: str
    binlog_row_metadata: str | None
    gtid_mode: str | None

    @property
    def flavor(self) -> Flavor:
        """MariaDB or MySQL."""
        return self.version.flavor

    def same_server_as(self, other: ServerInfo) -> bool:
        """True when both describe one server reached by two addresses (source == target)."""
        if self.server_uuid and other.server_uuid:
            return self.server_uuid == other.server_uuid
        return (self.server_id, self.hostname, self.port, self.datadir) == (
            other.server_id,
            other.hostname,
            other.port,
            other.datadir,
        )


async def server_info(conn: Any) -> ServerInfo:
    """Read the :class:`ServerInfo` of the connected server."""
    row = await query_one(
        conn,
        "SELECT VERSION(), @@server_id, @@hostname, @@port, @@datadir, @@log_bin, "
        "@@global.binlog_format, @@global.binlog_row_image",
    )
    assert row is not None
    version = parse_version(str(row[0]))
    metadata_row = await query_one(conn, "SHOW GLOBAL VARIABLES LIKE 'binlog_row_metadata'")
    uuid: str | None = None
    gtid_mode: str | None = None
    if version.flavor is Flavor.MYSQL:
        mysql_row = await query_one(conn, "SELECT @@server_uuid, @@global.gtid_mode")
        assert mysql_row is not None
        uuid, gtid_mode = str(mysql_row[0]), str(mysql_row[1])
    return ServerInfo(
        version=version,
        server_id=int(row[1]),
        server_uuid=uuid,
        hostname=str(row[2]),
        port=int(row[3]),
        datadir=str(row[4]).rstrip("/"),
        log_bin=bool(int(row[5])),
        binlog_format=str(row[6]).upper(),
        binlog_row_image=str(row[7]).upper(),
        binlog_row_metadata=str(metadata_row[1]).upper() if metadata_row else None,
        gtid_mode=gtid_mode,
    )


def position_sql(flavor: Flavor) -> str:
    """Reads a server's GTID position: everything it has committed and binlogged.

    Read right after a statement on the same connection, the position covers that statement.
    """
    return "SELECT @@global.gtid_binlog_pos" if flavor is Flavor.MARIADB else "SELECT @@global.gtid_executed"


async def current_position(conn: Any, flavor: Flavor) -> str:
    """A server's GTID position now, on one line (MySQL's gtid_executed has newlines after commas)."""
    row = await query_one(conn, position_sql(flavor))
    return str(row[0] if row and row[0] is not None else "").replace("\n", "")
