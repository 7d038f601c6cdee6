"""TLS for every server connection: the one place that turns a server section into TLS settings.

Every connection tablemover opens goes through here: :func:`tablemover.db.connect` (asyncmy: the
copy, the writer, the lag monitor, the lock connection, the checksum gate and every one-shot
command) and :func:`pymysql_connector` (the binlog streams, forward and reverse, which connect
through PyMySQL under mysql-replication). ``tests/unit/test_tls_settings.py`` enumerates the connection
calls in ``src/`` so that no new one bypasses this module.

The modes mean what the mysql client's ``--ssl-mode`` means:

``disabled``         plain text.
``preferred``        TLS when the server offers it, plain text when it does not (the default, as in
                     the mysql client); the certificate is not checked.
``required``         TLS or no connection; the certificate is not checked.
``verify_ca``        TLS, the server certificate must chain to ``tls_ca`` (or the system's CAs).
``verify_identity``  as ``verify_ca``, and the certificate must name the host we connect to.

A unix-socket connection never leaves the machine and is not encrypted (the mysql client and the
servers count it as secure); config validation refuses the ``verify_*`` modes with a socket, where
there is no certificate to check.
"""

from __future__ import annotations

import enum
import ipaddress
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tablemover.errors import MoveFailed

if TYPE_CHECKING:
    from tablemover.config import ServerSection

# The MySQL client error "SSL connection error": what both drivers raise, and what we raise, for a
# server that does not offer TLS under a mode that requires it.
CR_SSL_CONNECTION_ERROR = 2026
# The capability bit a server sets in its handshake when it accepts an in-protocol TLS upgrade.
CLIENT_SSL = 1 << 11


class TlsMode(enum.StrEnum):
    """``tls_mode``: the mysql client's ``--ssl-mode`` values, lower case."""

    DISABLED = "disabled"
    PREFERRED = "preferred"
    REQUIRED = "required"
    VERIFY_CA = "verify_ca"
    VERIFY_IDENTITY = "verify_identity"

    @property
    def requires_tls(self) -> bool:
        """No connection without TLS."""
        return self not in (TlsMode.DISABLED, TlsMode.PREFERRED)

    @property
    def verifies(self) -> bool:
        """The server certificate is checked against a CA."""
        return self in (TlsMode.VERIFY_CA, TlsMode.VERIFY_IDENTITY)


MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsSetupError(MoveFailed):
    """A TLS file named in the config cannot be used; exit 2, the config needs fixing.

    Raised when a connection is opened (that is when the files are read, so a renewed certificate
    is picked up by the next connection); preflight turns it into its own exit-2 report.
    """

    exit_code = 2


@dataclass(frozen=True)
class TlsState:
    """What one connection ended up with; shown by preflight, `status` and /metrics."""

    mode: str
    encrypted: bool
    version: str = ""
    cipher: str = ""
    verified: bool = False  # the server certificate was checked (verify_ca / verify_identity)
    transport: str = "tcp"  # or "socket": a local unix socket, never encrypted

    def describe(self) -> str:
        """One line for logs and preflight: ``TLSv1.3 TLS_AES_256_GCM_SHA384, certificate verified``."""
        if not self.encrypted:
            return "unix socket (local, not encrypted)" if self.transport == "socket" else "NOT encrypted"
        checked = "certificate verified" if self.verified else "certificate not verified"
        return f"{self.version} {self.cipher}, {checked} (tls_mode {self.mode})"


def is_loopback(host: str) -> bool:
    """True for an address that never leaves this machine (where plain text costs nothing)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _readable(server: ServerSection, key: str, path: str) -> None:
    """Raise :class:`TlsSetupError` naming ``key`` and ``path`` when the file cannot be read."""
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise TlsSetupError(
            f"cannot read {key} {path!r} of the server {server.address}: {exc.strerror}. "
            f"Check the path in the config (or its TABLEMOVER_*__{key.upper()} override) and that the "
            "user tablemover runs as may read it (systemd: list it in ReadOnlyPaths=)."
        ) from exc


def build_context(server: ServerSection) -> ssl.SSLContext | None:
    """The SSL context for connections to ``server``; None when they are plain (disabled, socket).

    Reads the CA, certificate and key files now; raises :class:`TlsSetupError` naming the file and
    the key when one is missing, unreadable or not what its key says. The key's contents never
    appear in a message.
    """
    mode = TlsMode(server.tls_mode)
    if mode is TlsMode.DISABLED or server.socket:
        return None
    for key in ("tls_ca", "tls_cert", "tls_key"):
        path = str(getattr(server, key))
        if path:
            _readable(server, key, path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if mode.verifies:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = mode is TlsMode.VERIFY_IDENTITY
        try:
            if server.tls_ca:
                ctx.load_verify_locations(cafile=server.tls_ca)
            else:
                ctx.load_default_certs()
        except ssl.SSLError as exc:
            raise TlsSetupError(
                f"tls_ca {server.tls_ca!r} of the server {server.address} is not a PEM CA certificate "
                f"({exc.reason or exc}). Point tls_ca at the CA that signed the server's certificate."
            ) from exc
    else:
        # preferred / required: encryption without authentication, as the mysql client does.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if server.tls_cert:
        try:
            ctx.load_cert_chain(server.tls_cert, keyfile=server.tls_key or None)
        except ssl.SSLError as exc:
            raise TlsSetupError(
                f"tls_cert {server.tls_cert!r} / tls_key {server.tls_key!r} of the server {server.address} "
                f"cannot be used ({exc.reason or exc}): both must be PEM, the key unencrypted and "
                "belonging to the certificate."
            ) from exc
    if server.tls_min_version:
        ctx.minimum_version = MIN_VERSIONS[server.tls_min_version]
    return ctx


def _state(server: ServerSection, ssl_object: Any) -> TlsState:
    mode = TlsMode(server.tls_mode)
    if server.socket:
        return TlsState(mode.value, False, transport="socket")
    if ssl_object is None:
        return TlsState(mode.value, False)
    cipher = ssl_object.cipher()
    return TlsState(
        mode.value,
        True,
        version=str(ssl_object.version() or ""),
        cipher=str(cipher[0]) if cipher else "",
        verified=mode.verifies,
    )


def require_outcome(server: ServerSection, state: TlsState, role: str) -> None:
    """Refuse a plain TCP connection under a mode that requires TLS (whatever the driver did)."""
    if TlsMode(server.tls_mode).requires_tls and not state.encrypted and state.transport == "tcp":
        raise no_tls_error(server, role)


def no_tls_error(server: ServerSection, role: str) -> TlsSetupError:
    """The error for a server that does not offer TLS although ``tls_mode`` requires it."""
    return TlsSetupError(
        f"{role} server {server.address} does not offer TLS, and [{role}] tls_mode = "
        f'"{server.tls_mode}" requires it. Enable TLS on the server (ssl_cert/ssl_key), or set '
        'tls_mode = "preferred" to allow a plain connection.'
    )


def describe_tls_failure(server: ServerSection, role: str, exc: BaseException) -> str | None:
    """A message naming the setting to fix for a TLS handshake failure; None for other errors.

    The drivers wrap the ssl module's error in their own ("Can't connect ..."), so the causes
    of ``exc`` are looked at too.
    """
    seen: BaseException | None = exc
    for _depth in range(5):
        if seen is None or isinstance(seen, ssl.SSLError):
            break
        seen = seen.__cause__ or seen.__context__
    if isinstance(seen, ssl.SSLError):
        exc = seen
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            fix = (
                f"the server certificate does not name {server.host!r}: connect by a name the "
                f'certificate lists (its subjectAltName), or use tls_mode = "verify_ca"'
            )
        elif "expired" in reason.lower() or "not yet valid" in reason.lower():
            fix = "the server certificate is outside its validity period: renew it on the server"
        else:
            fix = (
                f"the server certificate does not chain to tls_ca {server.tls_ca or '(the system CAs)'!r}: "
                "set tls_ca to the CA that signed it"
            )
        return (
            f"{role} server {server.address}: TLS certificate check failed under tls_mode = "
            f'"{server.tls_mode}" ({reason}); {fix}.'
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"{role} server {server.address}: the TLS handshake failed ({exc.reason or exc}). Check [{role}] "
            "tls_min_version against the server's tls_version, and tls_cert/tls_key if the server "
            "requires a client certificate (REQUIRE X509)."
        )
    if getattr(exc, "args", None) and exc.args[0] == CR_SSL_CONNECTION_ERROR:
        return str(no_tls_error(server, role))
    return None


# What each connection role reached its server with, for `status` and /metrics: keyed by
# (server role, connection) such as ("source", "binlog"). Written by the connection factories
# (the binlog thread included, hence the lock), read by the status document.
_OBSERVED: dict[tuple[str, str], TlsState] = {}
_OBSERVED_LOCK = threading.Lock()


def observe(role: str, connection: str, state: TlsState) -> None:
    """Record the TLS state of a connection just opened."""
    with _OBSERVED_LOCK:
        _OBSERVED[(role, connection)] = state


def observed() -> dict[tuple[str, str], TlsState]:
    """A copy of every recorded TLS state."""
    with _OBSERVED_LOCK:
        return dict(_OBSERVED)


def status_fields(states: Mapping[tuple[str, str], TlsState]) -> dict[str, dict[str, Any]]:
    """`status`'s ``tls``: per server, whether every connection is encrypted, and each one's state."""
    out: dict[str, dict[str, Any]] = {}
    for (role, connection), state in sorted(states.items()):
        server = out.setdefault(role, {"mode": state.mode, "encrypted": True, "connections": {}})
        server["encrypted"] = server["encrypted"] and state.encrypted
        server["connections"][connection] = {k: v for k, v in asdict(state).items() if k != "mode"}
    return out


def ssl_object_of_asyncmy(conn: Any) -> Any:
    """The ``ssl.SSLObject`` of an open asyncmy connection, None when it is plain."""
    transport = getattr(conn, "_transport", None)
    return transport.get_extra_info("ssl_object") if transport is not None else None


def asyncmy_state(server: ServerSection, conn: Any) -> TlsState:
    """The TLS state of an open asyncmy connection."""
    return _state(server, ssl_object_of_asyncmy(conn))


def pymysql_state(server: ServerSection, conn: Any) -> TlsState:
    """The TLS state of an open PyMySQL connection."""
    sock = getattr(conn, "_sock", None)
    return _state(server, sock if isinstance(sock, ssl.SSLSocket) else None)


def pymysql_connector(server: ServerSection, role: str, connection: str) -> Callable[..., Any]:
    """A ``pymysql.connect`` replacement that applies ``server``'s TLS settings.

    mysql-replication opens its connections through ``pymysql_wrapper``; this is that wrapper.
    ``preferred`` falls back to plain text only when the server does not offer TLS (error 2026),
    never after a failed handshake, as the mysql client does.
    """
    import pymysql

    def open_connection(**settings: Any) -> Any:
        ctx = build_context(server)
        if ctx is None:
            conn = pymysql.connect(**settings, ssl_disabled=True)
        else:
            try:
                conn = pymysql.connect(**settings, ssl=ctx)
            except pymysql.err.OperationalError as exc:
                no_tls = bool(exc.args) and exc.args[0] == CR_SSL_CONNECTION_ERROR
                if not (no_tls and server.tls_mode == "preferred"):
                    raise
                conn = pymysql.connect(**settings, ssl_disabled=True)
        state = pymysql_state(server, conn)
        try:
            require_outcome(server, state, role)
        except TlsSetupError:
            conn.close()
            raise
        observe(role, connection, state)
        return conn

    return open_connection


def status_line(fields: Mapping[str, Mapping[str, Any]]) -> str:
    """The text `status` line for :func:`status_fields`: ``tls: source TLSv1.3 verified, target ...``."""
    parts = []
    for role, server in fields.items():
        connections = list(server.get("connections", {}).values())
        if server.get("encrypted") and connections:
            versions = sorted({str(c.get("version", "")) for c in connections})
            verified = all(c.get("verified") for c in connections)
            parts.append(f"{role} {'/'.join(versions)} {'verified' if verified else 'not verified'}")
        else:
            plain = sorted(
                name for name, c in server.get("connections", {}).items() if not c.get("encrypted")
            )
            parts.append(f"{role} NOT encrypted ({', '.join(plain)})")
    return "tls: " + ", ".join(parts)
