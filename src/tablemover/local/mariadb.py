"""Start and stop private ``mariadbd`` instances under a temporary directory.

Each instance gets its own datadir, socket and free loopback port, binlog ROW/FULL and GTID strict
mode, so it behaves like a production primary. The system-wide MariaDB (often on 3306) is never
touched: we pass ``--no-defaults`` so no ``/etc/mysql`` option file leaks in.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql

if TYPE_CHECKING:
    from tablemover.config import MoveSection

MOVER_USER = "mover"
MOVER_PASSWORD = "mover-pass"

# The privileges README.md documents for the move user, and nothing more. Database-level grants use
# a wildcard so every test schema (tm_...) is covered without granting on *.*.
SOURCE_GRANTS = (
    # PROCESS: the cutover looks for transactions that would block its RENAME (blockers.py).
    "GRANT REPLICATION SLAVE, BINLOG MONITOR, PROCESS ON *.* TO '{user}'@'%'",
    "GRANT SELECT, INSERT, CREATE, ALTER, DROP ON `{db}`.* TO '{user}'@'%'",
)
# The move's state schema (its checkpoint; config default `_tablemover`), created by the daemon.
STATE_GRANTS = ("GRANT SELECT, INSERT, DELETE, CREATE, DROP ON `_tablemover`.* TO '{user}'@'%'",)
TARGET_GRANTS = (
    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `{db}`.* TO '{user}'@'%'",
    *STATE_GRANTS,
)
# What a rollback window adds: the reverse feed writes the renamed source tables and streams the
# target's binlog; a rollback renames on both sides.
WINDOW_SOURCE_GRANTS = ("GRANT UPDATE, DELETE ON `{db}`.* TO '{user}'@'%'", *STATE_GRANTS)
WINDOW_TARGET_GRANTS = (
    "GRANT REPLICATION SLAVE, BINLOG MONITOR, PROCESS ON *.* TO '{user}'@'%'",
    "GRANT ALTER ON `{db}`.* TO '{user}'@'%'",
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throwaway test PKI: a CA, a server certificate and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self, *, require_secure_transport: bool = True) -> tuple[str, ...]:
        """``mariadbd`` options serving TLS with these files (and refusing plain TCP logins)."""
        args = (f"--ssl-ca={self.ca}", f"--ssl-cert={self.server_cert}", f"--ssl-key={self.server_key}")
        return (*args, "--require-secure-transport=ON") if require_secure_transport else args

    def client_keys(self, mode: str = "verify_identity") -> dict[str, str]:
        """The ``[source]``/``[target]`` keys of a move that checks the server certificate against
        this CA (under ``mode``) and presents the client certificate (for a ``REQUIRE X509`` user)."""
        return {
            "tls_mode": mode,
            "tls_ca": str(self.ca),
            "tls_cert": str(self.client_cert),
            "tls_key": str(self.client_key),
        }


def require_x509(pair: LocalPair) -> None:
    """Make the move user ``REQUIRE X509`` on both servers: they then refuse any of its connections
    that is not TLS with a certificate of the pair's CA, so a move that completes had every
    connection encrypted."""
    for server in (pair.source, pair.target):
        server.execute(f"ALTER USER '{MOVER_USER}'@'%' REQUIRE X509")


def make_tls_files(
    directory: Path, server_names: Sequence[str] = ("127.0.0.1", "localhost"), *, server_expired: bool = False
) -> TlsFiles:
    """Generate a CA and a server and a client certificate signed by it, under ``directory``.

    ``server_names`` go into the server certificate's subjectAltName (IP addresses as IP entries),
    which is what ``tls_mode = "verify_identity"`` checks the connected host against. Keys are EC
    P-256 (fast to make), certificates valid from an hour ago for a day (``server_expired``: the
    server certificate expired a minute ago), keys mode 0600.
    """
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def write_key(name: str, key: ec.EllipticCurvePrivateKey) -> Path:
        path = directory / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    def write_cert(name: str, cert: x509.Certificate) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def builder(
        subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, *, expired: bool = False
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now - dt.timedelta(minutes=1) if expired else now + dt.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tablemover test CA")])
    ca_cert = (
        builder("tablemover test CA", ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        subject: str, usage: x509.ObjectIdentifier, names: Sequence[str]
    ) -> tuple[x509.Certificate, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            builder(
                subject, ca_name, key, expired=server_expired and usage == ExtendedKeyUsageOID.SERVER_AUTH
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(aki, critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            alt: list[x509.GeneralName] = []
            for n in names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf(
        server_names[0] if server_names else "server", ExtendedKeyUsageOID.SERVER_AUTH, server_names
    )
    client_cert, client_key = leaf(MOVER_USER, ExtendedKeyUsageOID.CLIENT_AUTH, ())
    return TlsFiles(
        ca=write_cert("ca.pem", ca_cert),
        server_cert=write_cert("server-cert.pem", server_cert),
        server_key=write_key("server-key.pem", server_key),
        client_cert=write_cert("client-cert.pem", client_cert),
        client_key=write_key("client-key.pem", client_key),
    )


# Server options that only take effect when the datadir is initialised: passed to install-db too.
INSTALL_TIME_ARGS = ("--lower-case-table-names",)


class LocalServerError(RuntimeError):
    """A local server could not be installed or started."""


def find_mariadbd() -> str | None:
    """Path of the ``mariadbd`` binary, or None when MariaDB is not installed."""
    for candidate in ("mariadbd", "/usr/sbin/mariadbd", "/usr/libexec/mariadbd"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def root_connection(
    socket_path: str, database: str | None = None, *, streaming: bool = False
) -> pymysql.connections.Connection[Any]:
    """A root connection to a local server's unix socket, autocommit on.

    ``streaming`` uses an unbuffered cursor, for reading whole tables without holding them in memory.
    """
    return pymysql.connect(
        unix_socket=socket_path,
        user="root",
        password="",
        database=database,
        autocommit=True,
        charset="utf8mb4",
        connect_timeout=5,
        cursorclass=pymysql.cursors.SSCursor if streaming else pymysql.cursors.Cursor,
    )


@dataclass
class LocalMariaDB:
    """One private mariadbd. Use :meth:`start` / :meth:`stop`, or as a context manager."""

    basedir: Path
    server_id: int
    row_metadata: str = "FULL"
    gtid_domain_id: int = 0
    extra_args: Sequence[str] = ()
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        """The instance's data directory."""
        return self.basedir / "data"

    @property
    def socket(self) -> str:
        """The unix socket path (admin access as root goes through it)."""
        return str(self.basedir / "mysqld.sock")

    @property
    def log_path(self) -> Path:
        """The server's error log."""
        return self.basedir / "error.log"

    def _args(self, binary: str) -> list[str]:
        args = [
            binary,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.basedir / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            # Temporary tables of its own, not in the shared /tmp where anything may clean up.
            f"--tmpdir={self.basedir / 'tmp'}",
            f"--log-bin={self.basedir / 'binlog' / 'bin'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            f"--binlog-row-metadata={self.row_metadata}",
            f"--server-id={self.server_id}",
            f"--gtid-domain-id={self.gtid_domain_id}",
            "--gtid-strict-mode=ON",
            "--log-slave-updates=ON",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            # Throwaway servers: trade durability against a *machine* crash for speed. Each commit
            # still reaches the OS (redo log and binlog written, not fsynced), so a SIGKILL of the
            # server itself (restart(kill=True), the fault tests) loses no committed transaction.
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--innodb-doublewrite=0",
            "--innodb-buffer-pool-size=256M",
            "--innodb-log-file-size=256M",
            "--max-connections=500",
            "--log-bin-trust-function-creators=1",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        args.extend(self.extra_args)
        return args

    def install(self, template: Path | None = None) -> None:
        """Create the datadir, copying ``template`` when given (much faster than install-db)."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        (self.basedir / "binlog").mkdir(exist_ok=True)
        if template is not None:
            shutil.copytree(template, self.datadir)
            return
        (self.basedir / "tmp").mkdir(exist_ok=True)
        install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if install_db is None:
            raise LocalServerError("mariadb-install-db not found: install the mariadb-server package")
        cmd = [
            install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            # A private tmpdir: every mariadbd, the bootstrap one included, deletes the "#sql*"
            # files in its tmpdir when it starts, so two installs sharing /tmp (the demo installs
            # its replicas side by side; any server starting there meanwhile) delete each other's
            # temporary tables mid-bootstrap ("Unknown table 'mysql.tmp_user_sys'").
            f"--tmpdir={self.basedir / 'tmp'}",
            # Settings fixed when the datadir is created (lower_case_table_names: the data
            # dictionary's names are folded then) go to install-db too, not only to the server.
            *(a for a in self.extra_args if a.startswith(INSTALL_TIME_ARGS)),
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalServerError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout_s: float = 60.0) -> None:
        """Start mariadbd on a free port and wait until it accepts connections."""
        for _attempt in range(5):
            self.port = free_port()
            if self._launch(timeout_s):
                return
            # A port race (someone bound it between free_port() and mariadbd) is the usual cause;
            # anything else shows up in the error log we raise with below.
        raise LocalServerError(f"mariadbd in {self.basedir} did not start:\n{self._log_tail()}")

    def restart(self, *, kill: bool = False, timeout_s: float = 60.0) -> None:
        """Stop the server (SIGTERM: a clean shutdown; ``kill``: SIGKILL, a crash) and start it again.

        It comes back on the same port, so clients configured with host:port (a daemon under
        test) reconnect to it; returns once it accepts connections. A server that already died is
        just started again.
        """
        if kill:
            self._kill()
        else:
            self.stop()
        for _attempt in range(3):
            # The port is ours as long as nothing else bound it while the server was down; the
            # listener sets SO_REUSEADDR, so connections in TIME_WAIT do not block it.
            if self._launch(timeout_s):
                return
            time.sleep(0.5)
        raise LocalServerError(
            f"mariadbd in {self.basedir} did not restart on port {self.port}:\n{self._log_tail()}"
        )

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be starting)."""
        return self.process is not None and self.process.poll() is None

    def _launch(self, timeout_s: float) -> bool:
        """Start mariadbd on ``self.port``; False (and no process left) when it did not get ready."""
        binary = find_mariadbd()
        if binary is None:
            raise LocalServerError("mariadbd not found: install the mariadb-server package")
        (self.basedir / "tmp").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._args(binary), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if self._wait_ready(timeout_s):
            return True
        self._kill()
        return False

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                conn = self.admin()
            except pymysql.err.OperationalError:
                time.sleep(0.05)
                continue
            conn.close()
            return True
        return False

    def admin(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """A root connection over the unix socket, autocommit on."""
        return root_connection(self.socket, database)

    def execute(self, *statements: str) -> list[tuple[object, ...]]:
        """Run statements as root; returns the rows of the last one."""
        conn = self.admin()
        try:
            rows: list[tuple[object, ...]] = []
            with conn.cursor() as cur:
                for stmt in statements:
                    cur.execute(stmt)
                    rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def crash(self) -> None:
        """SIGKILL the server and leave it down (fault tests); :meth:`restart` brings it back."""
        self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()

    def __enter__(self) -> LocalMariaDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalPair:
    """A source and a target server under one temporary directory."""

    root: Path
    source: LocalMariaDB
    target: LocalMariaDB

    def stop(self) -> None:
        """Stop both servers."""
        self.source.stop()
        self.target.stop()

    def cleanup(self) -> None:
        """Stop both servers and remove their files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_pair(
    row_metadata: str = "FULL", root: Path | None = None, extra_args: Sequence[str] = ()
) -> LocalPair:
    """Install (once, then copy) and start a source and a target server.

    The datadir is installed once and copied for the second server: install-db is the slow part.
    ``extra_args`` are passed to both servers (e.g. to switch the performance schema on).
    """
    base = root or Path(tempfile.mkdtemp(prefix="tablemover-servers-"))
    template = base / "template"
    seed = LocalMariaDB(base / "seed", server_id=99, extra_args=extra_args)
    seed.install()
    shutil.move(str(seed.datadir), str(template))
    shutil.rmtree(seed.basedir, ignore_errors=True)
    source = LocalMariaDB(
        base / "source", server_id=1, row_metadata=row_metadata, gtid_domain_id=0, extra_args=extra_args
    )
    target = LocalMariaDB(
        base / "target", server_id=2, row_metadata=row_metadata, gtid_domain_id=0, extra_args=extra_args
    )
    pair = LocalPair(base, source, target)
    try:
        for server in (source, target):
            server.install(template)
        source.start()
        target.start()
        for server in (source, target):
            server.execute(
                f"CREATE USER IF NOT EXISTS '{MOVER_USER}'@'%' IDENTIFIED BY '{MOVER_PASSWORD}'",
                # Anonymous users shadow 'mover'@'%' for local connections; drop any install-db left.
                "DELETE FROM mysql.global_priv WHERE User=''",
                "FLUSH PRIVILEGES",
            )
    except BaseException:
        pair.cleanup()
        raise
    shutil.rmtree(template, ignore_errors=True)
    return pair


def grant_mover(pair: LocalPair, db_pattern: str, *, window: bool = False) -> None:
    """Grant the mover user its documented privileges on schemas matching ``db_pattern`` (and
    those a rollback window needs, with ``window``)."""
    source: tuple[str, ...] = SOURCE_GRANTS
    target: tuple[str, ...] = TARGET_GRANTS
    if window:
        source, target = source + WINDOW_SOURCE_GRANTS, target + WINDOW_TARGET_GRANTS
    for server, grants in ((pair.source, source), (pair.target, target)):
        server.execute(*(g.format(user=MOVER_USER, db=db_pattern) for g in grants))


def grant_least(pair: LocalPair, move: MoveSection) -> None:
    """Grant the mover user exactly what `tablemover check` prints for ``move``, PROCESS included
    (optional: the cutover's blocker check), before the target schema exists."""
    from tablemover.flavor import Flavor
    from tablemover.preflight.grant_plan import Side, group_statements, minimal_needs

    needs = minimal_needs(move, target_schema_exists=False)
    account = f"'{MOVER_USER}'@'%'"
    for side, server in ((Side.SOURCE, pair.source), (Side.TARGET, pair.target)):
        statements = group_statements([n for n in needs if n.side is side])
        server.execute(*(g.sql(account, Flavor.MARIADB).rstrip(";") for g in statements))


# What the move user needs on a replica it reads rows and the binlog from (issue #24): the rows
# (SELECT; MariaDB's locking read needs nothing more), the binlog dump and its position, and the
# replica's own status.
READ_REPLICA_GRANTS = (
    "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR ON *.* TO '{user}'@'%'",
)


def grant_reader(replica: LocalMariaDB) -> None:
    """Grant the mover user on ``replica`` what reading a move from it needs (not binlogged)."""
    replica.execute("SET SESSION sql_log_bin = 0", *(g.format(user=MOVER_USER) for g in READ_REPLICA_GRANTS))


def pair_config(pair: LocalPair, workdir: Path, move: dict[str, Any], **sections: dict[str, Any]) -> str:
    """TOML for a move between the pair's servers as the mover user; ``sections`` override keys
    (a ``replica`` section is written as given, after the mover user's credentials)."""
    from tablemover.config import render_toml

    def server(srv: LocalMariaDB, role: str) -> dict[str, Any]:
        base = {"host": "127.0.0.1", "port": srv.port, "user": MOVER_USER, "password": MOVER_PASSWORD}
        return {**base, **sections.get(role, {})}

    control = {"socket": str(workdir / "{name}.sock"), "http": "", **sections.get("control", {})}
    return render_toml(
        {
            "move": move,
            "source": server(pair.source, "source"),
            "target": server(pair.target, "target"),
            **(
                {"replica": {"user": MOVER_USER, "password": MOVER_PASSWORD, **sections["replica"]}}
                if sections.get("replica")
                else {}
            ),
            "throttle": sections.get("throttle", {}),
            "control": control,
        }
    )


REPL_USER, REPL_PASSWORD = "tm_repl", "tm_repl_pw"


def replicate(
    replica: LocalMariaDB, master: LocalMariaDB, *, start: str | None = None, threads: str = ""
) -> None:
    """Make ``replica`` a GTID replica of ``master`` (tests, demo, drill and bench): a replication
    account on ``master``, the move user on ``replica`` with what a watched replica needs (its
    heartbeat rows: SELECT; SHOW SLAVE STATUS: SLAVE MONITOR), from GTID position ``start`` (None:
    ``master``'s position now; "": from its first binlog event), then ``START SLAVE threads``
    (e.g. "IO_THREAD"; "" both).

    Neither server logs these accounts (``sql_log_bin = 0``): a replica's own GTIDs in its master's
    domain would break gtid_strict_mode against what it replicates, and a master that is itself a
    replica (a chain) is one.
    """
    master.execute(
        "SET SESSION sql_log_bin = 0",
        f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'",
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'",
    )
    position = str(master.execute("SELECT @@gtid_binlog_pos")[0][0] or "") if start is None else start
    replica.execute(
        "SET SESSION sql_log_bin = 0",
        f"CREATE USER IF NOT EXISTS '{MOVER_USER}'@'%' IDENTIFIED BY '{MOVER_PASSWORD}'",
        "DELETE FROM mysql.global_priv WHERE User=''",
        "FLUSH PRIVILEGES",
        f"GRANT SELECT, SLAVE MONITOR ON *.* TO '{MOVER_USER}'@'%'",
        f"SET GLOBAL gtid_slave_pos = '{position}'",
        f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {master.port}, "
        f"MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}', MASTER_USE_GTID = slave_pos",
        f"START SLAVE {threads}".rstrip(),
    )
