"""TLS on every connection, on real servers that refuse anything else.

The ``tls_pair`` servers run with ``require_secure_transport=ON`` and the mover user is created
``REQUIRE X509``: a connection of any role that is not TLS with the client certificate is refused
by the server, so a move that completes proves every role connected encrypted. The tests also look
at each connection from the server's side (performance_schema's per-thread ``Ssl_cipher``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from conftest import MoveEnv, TlsPair
from support import WriteLoad, renames_in_binlog, transitions, wait_for_log
from tablemover.local.mariadb import LocalMariaDB, TlsFiles, make_tls_files

TABLE = "CREATE TABLE {name} (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), b VARBINARY(20), KEY (k))"


def seed(move: MoveEnv, tables: list[str], rows: int) -> None:
    for t in tables:
        move.src(
            TABLE.format(name=t),
            f"INSERT INTO {t} SELECT seq, seq % 97, CONCAT('seed-ø-', seq), UNHEX(SHA1(seq)) "
            f"FROM seq_1_to_{rows}",
        )


def hex_rows(server: LocalMariaDB, database: str, table: str) -> list[tuple[Any, ...]]:
    """Every row as HEX() of every column, in primary key order: a byte-for-byte comparison."""
    conn = server.admin(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT GROUP_CONCAT(CONCAT('HEX(`', COLUMN_NAME, '`)') ORDER BY ORDINAL_POSITION) "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                (database, table),
            )
            columns = cur.fetchone()[0]
            cur.execute(f"SELECT {columns} FROM `{table}` ORDER BY id")
            return list(cur.fetchall())
    finally:
        conn.close()


def assert_hex_equal(move: MoveEnv, tables: dict[str, str]) -> None:
    for src, dst in tables.items():
        a = hex_rows(move.source, move.database, src)
        b = hex_rows(move.target, move.target_database, dst)
        assert a == b, f"{src} -> {dst}: {len(a)} source rows vs {len(b)} target rows, or values differ"
        assert a, f"{src}: no rows; the comparison would prove nothing"


def mover_connections(server: LocalMariaDB) -> dict[int, tuple[str, str]]:
    """{processlist id: (command, Ssl_cipher)} of every connection of the mover user, from the
    server's side."""
    rows = server.execute(
        "SELECT t.PROCESSLIST_ID, t.PROCESSLIST_COMMAND, IFNULL(s.VARIABLE_VALUE, '') "
        "FROM performance_schema.threads t LEFT JOIN performance_schema.status_by_thread s "
        "ON s.THREAD_ID = t.THREAD_ID AND s.VARIABLE_NAME = 'Ssl_cipher' "
        "WHERE t.PROCESSLIST_USER = 'mover'"
    )
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}


class ConnectionWatch:
    """Samples the mover's connections on both servers while a daemon runs."""

    def __init__(self, move: MoveEnv) -> None:
        self.move = move
        self.seen: dict[tuple[str, int], tuple[str, str]] = {}
        self.samples: dict[tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for role, server in (("source", self.move.source), ("target", self.move.target)):
                for pid, facts in mover_connections(server).items():
                    # A thread's status can be sampled before the server has filled it in (a
                    # connection in its first instant shows no Ssl_cipher yet): keep the sample
                    # that shows one. require_secure_transport refuses a plain TCP login anyway.
                    if facts[1] or (role, pid) not in self.seen:
                        self.seen[(role, pid)] = facts
                    self.samples[(role, pid)] = self.samples.get((role, pid), 0) + 1
            self._stop.wait(0.05)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def status_json(move: MoveEnv, cfg: Path) -> dict[str, Any]:
    result = move.cli("status", "-c", str(cfg), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def wait_until(predicate: Any, what: str, proc: Any = None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the daemon ended while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.1)


def tls_config(env: MoveEnv, tls_pair: TlsPair, tables: list[str], **sections: dict[str, Any]) -> Path:
    keys = tls_pair.server_keys("verify_identity")
    return env.config(
        tables,
        source={**keys, **sections.pop("source", {})},
        target={**keys, **sections.pop("target", {})},
        **sections,
    )


def test_whole_move_over_verified_tls_under_writes_with_a_sigkill(
    tls_move: MoveEnv, tls_pair: TlsPair
) -> None:
    move = tls_move
    seed(move, ["a", "b", "c"], 20_000)
    # Small fixed chunks: the copy lasts long enough (seconds) to be killed in the middle.
    cfg = tls_config(move, tls_pair, ["a", "b"], move={"chunk_size": 50, "adaptive_chunk_size": False})
    load = WriteLoad(move.source, move.database, ["a", "b", "c"], key_space=20_000, pause_s=0.001).start()
    try:
        with ConnectionWatch(move) as watch:
            daemon = move.popen("run", "--stop-before-cutover", "-c", str(cfg))
            # Mid-copy: the copy, writer, monitor and binlog connections are all open.
            doc: dict[str, Any] = {}

            def copying() -> bool:
                doc.update(status_json(move, cfg))
                return doc.get("origin") == "daemon" and doc.get("rows_copied", 0) > 1000

            wait_until(copying, "the copy", daemon)
            assert doc["state"] == "COPYING", doc
            text = move.cli("status", "-c", str(cfg))
            assert "tls: source TLSv1.3 verified, target TLSv1.3 verified" in text.stdout, text.stdout
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
        # The daemon's own view: every connection to each server encrypted and verified.
        for role in ("source", "target"):
            server = doc["tls"][role]
            assert server["mode"] == "verify_identity" and server["encrypted"] is True, doc["tls"]
            for name, conn in server["connections"].items():
                assert conn["encrypted"] and conn["verified"] and conn["version"].startswith("TLSv1."), (
                    name,
                    conn,
                )
        # Per role: the copy readers, the monitor and lag connections and the binlog stream on the
        # source; the writer and the move's lock on the target.
        assert {"copy", "monitor", "lag", "binlog"} <= set(doc["tls"]["source"]["connections"]), doc["tls"]
        assert {"writer", "lock"} <= set(doc["tls"]["target"]["connections"]), doc["tls"]
        # The servers' view: each mover connection that existed while the daemon ran used TLS,
        # including the binlog dump.
        assert watch.seen, "no mover connection was sampled"
        plain = {key: facts for key, facts in watch.seen.items() if not facts[1] and watch.samples[key] > 2}
        assert not plain, f"connections without TLS: {plain}"
        assert any(cmd == "Binlog Dump" for (role, _), (cmd, _c) in watch.seen.items() if role == "source")
        assert len([k for k in watch.seen if k[0] == "source"]) >= 3, watch.seen
        assert len([k for k in watch.seen if k[0] == "target"]) >= 2, watch.seen

        # Resume after the SIGKILL, still under writes, up to the cutover.
        resumed = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        ops = load.stop()
    assert ops > 200, f"the write load barely ran ({ops} ops)"
    assert not load.errors, load.errors[:3]
    # The rest, including the checksum gate and the cutover's lock connection, over TLS.
    final = move.cli("run", "-c", str(cfg))
    assert final.returncode == 0, final.stderr[-3000:]
    assert transitions(move)[-1] == "DONE"
    assert_hex_equal(move, {"_a_moved": "a", "_b_moved": "b"})
    # The drill's cutover check: the source's binlog holds exactly one RENAME of each moved table.
    assert (renames_in_binlog(move, "a"), renames_in_binlog(move, "b")) == (1, 1)
    text = move.cli("status", "-c", str(cfg))
    assert text.returncode == 0, text.stderr[-2000:]
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]


def test_check_reports_each_servers_tls(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    move = tls_move
    seed(move, ["a"], 10)
    cfg = tls_config(move, tls_pair, ["a"])
    result = move.cli("check", "-c", str(cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    for role in ("source", "target"):
        line = next(x for x in result.stderr.splitlines() if f"preflight: {role} connection" in x)
        assert "TLSv1." in line and "certificate verified" in line and "verify_identity" in line, line


def test_plain_connection_to_the_tls_only_server_is_refused(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    move = tls_move
    seed(move, ["a"], 10)
    cfg = move.config(["a"], source={"tls_mode": "disabled"}, target=tls_pair.server_keys())
    result = move.cli("check", "-c", str(cfg))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "access denied" in result.stderr and "tls_mode" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@contextlib.contextmanager
def target_serving(tls_pair: TlsPair, files: TlsFiles, tmp_path: Path) -> Iterator[None]:
    """The target serves ``files``' server certificate (FLUSH SSL reloads it), then its own again."""
    own = tls_pair.files
    backup = tmp_path / "backup"
    backup.mkdir(exist_ok=True)
    for f in (own.server_cert, own.server_key):
        shutil.copy2(f, backup / f.name)
    try:
        shutil.copyfile(files.server_cert, own.server_cert)
        shutil.copyfile(files.server_key, own.server_key)
        tls_pair.pair.target.execute("FLUSH SSL")
        yield
    finally:
        for f in (own.server_cert, own.server_key):
            shutil.copyfile(backup / f.name, f)
        tls_pair.pair.target.execute("FLUSH SSL")


def check_target(move: MoveEnv, tls_pair: TlsPair, **target: str) -> subprocess.CompletedProcess[str]:
    cfg = move.config(["a"], source=tls_pair.server_keys(), target={**tls_pair.server_keys(), **target})
    result = move.cli("check", "-c", str(cfg))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def test_verify_identity_against_a_certificate_for_another_host_is_refused(
    tls_move: MoveEnv, tls_pair: TlsPair, tmp_path: Path
) -> None:
    """The target serves, for this test, a certificate naming another host (from a CA of its own,
    which tls_ca names: the chain verifies, only the name is wrong)."""
    move = tls_move
    seed(move, ["a"], 10)
    elsewhere = make_tls_files(tmp_path / "elsewhere", server_names=("db.elsewhere.example",))
    with target_serving(tls_pair, elsewhere, tmp_path):
        result = check_target(move, tls_pair, tls_ca=str(elsewhere.ca))
        assert result.returncode == 2, result.stderr[-3000:]
        assert "does not name '127.0.0.1'" in result.stderr, result.stderr[-3000:]
        assert "verify_ca" in result.stderr, result.stderr[-3000:]
        # The same certificate passes verify_ca: it is the name, not the chain, that failed.
        relaxed = check_target(move, tls_pair, tls_ca=str(elsewhere.ca), tls_mode="verify_ca")
        assert relaxed.returncode == 0, relaxed.stderr[-3000:]
        # A CA that did not sign it is refused, naming tls_ca.
        untrusted = check_target(move, tls_pair)
        assert untrusted.returncode == 2, untrusted.stderr[-3000:]
        assert f"does not chain to tls_ca '{tls_pair.files.ca}'" in untrusted.stderr, untrusted.stderr[-3000:]


def test_an_expired_server_certificate_is_refused(
    tls_move: MoveEnv, tls_pair: TlsPair, tmp_path: Path
) -> None:
    move = tls_move
    seed(move, ["a"], 10)
    expired = make_tls_files(tmp_path / "expired", server_expired=True)
    with target_serving(tls_pair, expired, tmp_path):
        result = check_target(move, tls_pair, tls_ca=str(expired.ca))
        assert result.returncode == 2, result.stderr[-3000:]
        assert "expired" in result.stderr and "renew it" in result.stderr, result.stderr[-3000:]


def test_required_against_a_server_without_tls_is_refused(move: MoveEnv) -> None:
    """The plain ``pair`` offers no TLS: required and verify_identity refuse, preferred connects."""
    move.src("CREATE TABLE a (id INT PRIMARY KEY)", "INSERT INTO a VALUES (1)")
    for mode in ("required", "verify_identity"):
        cfg = move.config(["a"], target={"tls_mode": mode})
        result = move.cli("check", "-c", str(cfg))
        assert result.returncode == 2, result.stderr[-3000:]
        assert "does not offer TLS" in result.stderr and f'tls_mode = "{mode}"' in result.stderr, (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    cfg = move.config(["a"])  # preferred: falls back to plain text, loopback so no warning
    result = move.cli("check", "-c", str(cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT encrypted" in result.stderr and "clear text" not in result.stderr


def test_an_unreadable_key_file_is_exit_2_naming_it(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    move = tls_move
    seed(move, ["a"], 10)
    missing = move.workdir / "nowhere" / "client-key.pem"
    cfg = move.config(
        ["a"], source=tls_pair.server_keys(), target={**tls_pair.server_keys(), "tls_key": str(missing)}
    )
    for command in ("check", "run"):
        result = move.cli(command, "-c", str(cfg))
        assert result.returncode == 2, result.stderr[-3000:]
        assert f"tls_key {str(missing)!r}" in result.stderr, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    # A key that is not the certificate's: names both files.
    cfg = move.config(
        ["a"],
        source=tls_pair.server_keys(),
        target={**tls_pair.server_keys(), "tls_key": str(tls_pair.files.server_key)},
    )
    result = move.cli("check", "-c", str(cfg))
    assert result.returncode == 2 and "tls_cert" in result.stderr and "tls_key" in result.stderr, (
        result.stderr
    )


def test_ed25519_login_over_tls(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    """MariaDB's ed25519 login works for both drivers (the binlog stream's and asyncmy)."""
    move = tls_move
    seed(move, ["a"], 2000)
    user = f"ed_{move.database[-6:]}"
    for server, grants in (
        (move.source, ("REPLICATION SLAVE, BINLOG MONITOR, PROCESS ON *.*", f"ALL ON `{move.database}`.*")),
        (
            move.target,
            (
                f"ALL ON `{move.target_database}`.*",
                # the move's state schema (its checkpoint), which every move user needs
                f"SELECT, INSERT, DELETE, CREATE, DROP ON `{move.state_database}`.*",
            ),
        ),
    ):
        try:
            server.execute("INSTALL SONAME 'auth_ed25519'")
        except pymysql.err.MySQLError as exc:
            assert exc.args[0] == 1968, exc  # already installed by an earlier run of this test
        server.execute(
            f"CREATE USER '{user}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pass') REQUIRE SSL",
            *(f"GRANT {g} TO '{user}'@'%'" for g in grants),
        )
    try:
        keys = {**tls_pair.server_keys(), "user": user, "password": "ed-pass", "tls_cert": "", "tls_key": ""}
        cfg = move.config(["a"], source=keys, target=keys)
        result = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
        assert result.returncode == 0, result.stderr[-3000:]
        assert_hex_equal(move, {"a": "a"})
    finally:
        for server in (move.source, move.target):
            server.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def test_rollback_through_the_reverse_stream_over_tls(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    move = tls_move
    seed(move, ["a"], 2000)
    cfg = tls_config(move, tls_pair, ["a"], move={"chunk_size": 300, "rollback_window_s": 600})
    daemon = move.popen("run", "-c", str(cfg))
    wait_for_log(move, "rollback window open", daemon)
    load = WriteLoad(move.target, move.target_database, ["a"], key_space=2000, pause_s=0.002).start()
    try:
        deadline = time.monotonic() + 60
        while load.ops < 200:
            assert time.monotonic() < deadline, "target writes stalled"
            time.sleep(0.05)
        doc = status_json(move, cfg)
        reverse = doc["tls"]["target"]["connections"]["binlog"]
        assert reverse["encrypted"] and reverse["verified"], doc["tls"]
        binlog_dumps = [c for c in mover_connections(move.target).values() if c[0] == "Binlog Dump"]
        assert binlog_dumps and all(cipher for _cmd, cipher in binlog_dumps), binlog_dumps
        result = move.cli("rollback", "-c", str(cfg), timeout=300)
    finally:
        load.stop()
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert daemon.wait(timeout=120) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    assert transitions(move)[-1] == "ROLLED_BACK"
    assert_hex_equal(move, {"a": "_a_rolledback"})


@pytest.mark.parametrize("mode", ["preferred", "required"])
def test_unverified_modes_encrypt_without_checking(tls_move: MoveEnv, tls_pair: TlsPair, mode: str) -> None:
    """preferred and required encrypt against the TLS-only servers but do not claim verification."""
    move = tls_move
    seed(move, ["a"], 10)
    keys = {**tls_pair.server_keys(mode), "tls_ca": ""}
    cfg = move.config(["a"], source=keys, target=keys)
    result = move.cli("check", "-c", str(cfg))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "certificate not verified" in result.stderr, result.stderr[-3000:]


def test_a_source_restart_with_refused_logins_is_ridden_through_over_tls(
    tls_move: MoveEnv, tls_pair: TlsPair
) -> None:
    """The nearest MariaDB has to MySQL's caching_sha2 full authentication after a restart: the
    source restarts mid-copy and, for a while, refuses the mover's login (the account is locked).
    Every reconnect is a fresh TLS handshake plus a login; the refused logins are transient, and
    the move goes on once they succeed, ending equal."""
    move = tls_move
    seed(move, ["a"], 20_000)
    cfg = tls_config(move, tls_pair, ["a"], move={"chunk_size": 50, "adaptive_chunk_size": False})
    daemon = move.popen("run", "--stop-before-cutover", "-c", str(cfg))
    try:
        wait_until(
            lambda: (
                status_json(move, cfg).get("rows_copied", 0) > 1000
                and status_json(move, cfg).get("origin") == "daemon"
            ),
            "the copy",
            daemon,
        )
        move.source.execute("ALTER USER 'mover'@'%' ACCOUNT LOCK")
        move.source.restart()

        # A retry that met the refused login (error 4151 "this account is locked"), not only the
        # connections the restart cut.
        def login_refused() -> bool:
            log = (move.workdir / "daemon.log").read_text()
            return any("transient error" in line and "locked" in line for line in log.splitlines())

        wait_until(login_refused, "a retry after a refused login", daemon)
    finally:
        move.source.execute("ALTER USER 'mover'@'%' ACCOUNT UNLOCK")
    assert daemon.wait(timeout=300) == 0, (move.workdir / "daemon.log").read_text()[-3000:]
    move.src("INSERT INTO a VALUES (900001, 1, 'after-restart', x'00ff')")
    again = move.cli("run", "--stop-before-cutover", "-c", str(cfg))
    assert again.returncode == 0, again.stderr[-3000:]
    assert_hex_equal(move, {"a": "a"})


async def test_bulk_writes_over_tls(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    """The writer's fast path, MariaDB's COM_STMT_BULK_EXECUTE, works on an encrypted connection
    (asyncmy's TLS request alone would not announce it; db._Connection does)."""
    from tablemover import db
    from tablemover.config import ServerSection

    move = tls_move
    move.src("CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(8))")
    server = ServerSection.model_validate(
        {"host": "127.0.0.1", "port": move.source.port, "user": "mover", "password": "mover-pass"}
        | tls_pair.server_keys()
    )
    conn = await db.connect(server, "source", database=move.database)
    try:
        assert conn._bulk_supported and conn.tm_tls_request_patched
        stmt = await conn.prepare("INSERT INTO a (id, v) VALUES (?, ?)")
        result = await stmt.execute_bulk([(1, "x"), (2, "y"), (3, None)])
        assert result.affected_rows == 3
    finally:
        await db.close(conn)
    assert move.src("SELECT id, v FROM a ORDER BY id") == [(1, "x"), (2, "y"), (3, None)]


def test_sigkill_between_the_rename_and_its_checkpoint_over_tls(tls_move: MoveEnv, tls_pair: TlsPair) -> None:
    """The cutover's critical instant over TLS (the lock connection, the RENAME, the restart's
    look at what was renamed), under writes; the drill's checks after the restart: one RENAME of
    each table in the source's binlog, RENAMED once, DONE, equal byte for byte, `verify` exit 0."""
    move = tls_move
    seed(move, ["a", "b"], 3000)
    cfg = tls_config(move, tls_pair, ["a", "b"], move={"chunk_size": 500})
    load = WriteLoad(move.source, move.database, ["a", "b"], key_space=3000, pause_s=0.002).start()
    try:
        first = move.cli("run", "-c", str(cfg), env={"TABLEMOVER_FAULTS": "cutover.after_rename"})
    finally:
        ops = load.stop()
    assert first.returncode == -9, first.stderr[-2000:]
    assert ops > 50, f"the write load barely ran ({ops} ops)"
    second = move.cli("run", "-c", str(cfg))
    assert second.returncode == 0, second.stderr[-3000:]
    assert transitions(move)[-1] == "DONE" and transitions(move).count("RENAMED") == 1
    assert (renames_in_binlog(move, "a"), renames_in_binlog(move, "b")) == (1, 1)
    assert_hex_equal(move, {"_a_moved": "a", "_b_moved": "b"})
    verify = move.cli("verify", "-c", str(cfg))
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
