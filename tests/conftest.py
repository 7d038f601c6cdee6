"""Shared fixtures: real source/target mariadbd pairs and a fresh move per test.

Servers are session-scoped (starting a pair takes ~1.5 s); every test gets its own schemas
(``tm_<random>``), so tests never see each other's tables, checkpoints or binlog positions. The
fault tests (tests/faults) restart and kill servers, so they get a pair of their own
(``fault_pair``): the shared ``pair`` never goes down under another test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tablemover.local.mariadb import (
    LocalMariaDB,
    LocalPair,
    TlsFiles,
    find_mariadbd,
    grant_mover,
    grant_reader,
    make_tls_files,
    pair_config,
    replicate,
    require_x509,
    start_pair,
)

TEST_SCHEMA_GRANT = "tm\\_%"


# The fault tests find each daemon connection's role by the statements it ran
# (performance_schema.events_statements_history) and its client process (session_connect_attrs).
FAULT_SERVER_ARGS = (
    "--performance-schema=ON",
    "--performance-schema-consumer-events-statements-current=ON",
    "--performance-schema-consumer-events-statements-history=ON",
)


def _start(
    row_metadata: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    name: str = "",
    extra_args: tuple[str, ...] = (),
    window: bool = False,
) -> LocalPair:
    if find_mariadbd() is None:
        pytest.fail(
            "mariadbd is not installed: run `make setup` (it installs mariadb-server). "
            "Integration tests need real servers and never fall back to mocks.",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp(f"servers-{name or row_metadata}")
    pair = start_pair(row_metadata=row_metadata, root=root, extra_args=extra_args)
    grant_mover(pair, TEST_SCHEMA_GRANT, window=window)
    return pair


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """Source + target with binlog_row_metadata=FULL."""
    p = _start("FULL", tmp_path_factory)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def pair_minimal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """Source + target with binlog_row_metadata=MINIMAL: no column names in row events."""
    p = _start("MINIMAL", tmp_path_factory)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def fault_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """A source + target of the fault tests alone: they restart, kill and lock these servers."""
    p = _start("FULL", tmp_path_factory, name="faults", extra_args=FAULT_SERVER_ARGS)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def window_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    """A source + target whose mover user also holds what a rollback window needs."""
    p = _start("FULL", tmp_path_factory, name="window", window=True)
    yield p
    p.stop()


@dataclass
class TlsPair:
    """A pair serving TLS only (require_secure_transport=ON), its test PKI, and the client keys."""

    pair: LocalPair
    files: TlsFiles

    def server_keys(self, mode: str = "verify_identity") -> dict[str, str]:
        """The [source]/[target] TLS keys of a move that presents the client certificate."""
        return self.files.client_keys(mode)


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPair]:
    """Source + target with TLS (a private CA), require_secure_transport=ON, the performance schema
    on (per-connection Ssl_cipher), and the mover user REQUIRE X509 with the grants a rollback
    window needs."""
    files = make_tls_files(tmp_path_factory.mktemp("pki"))
    args = (*files.server_args(), "--performance-schema=ON")
    p = _start("FULL", tmp_path_factory, name="tls", extra_args=args, window=True)
    require_x509(p)
    yield TlsPair(p, files)
    p.stop()


@pytest.fixture
def tls_move(tls_pair: TlsPair, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move on the TLS pair; a daemon a failed test left running is killed."""
    moves = _new_move(tls_pair.pair, tmp_path)
    env = next(moves)
    yield env
    for proc in env.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    next(moves, None)


@pytest.fixture(params=["FULL", "MINIMAL"])
def any_pair(request: pytest.FixtureRequest) -> LocalPair:
    """Parametrises a test over both row-metadata settings."""
    name = "pair" if request.param == "FULL" else "pair_minimal"
    result: LocalPair = request.getfixturevalue(name)
    return result


@dataclass
class MoveEnv:
    """One test's move: fresh schemas on both servers and helpers to configure and run it."""

    pair: LocalPair
    database: str
    target_database: str
    workdir: Path
    # The move's state schema (config default `_tablemover`): one per test, since the session's
    # servers are shared and every test's move has the same name.
    state_database: str = "_tablemover"
    name: str = "t"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)  # what popen started
    # [move] keys every config of this move gets unless a test sets them (e.g. copy_threads).
    move_defaults: dict[str, Any] = field(default_factory=dict)
    # A replica of the source the move reads from ([replica], issue #24), when the test has one:
    # every config gets a [replica] section naming it unless a test passes replica={} .
    replica: LocalMariaDB | None = None

    @property
    def source(self) -> LocalMariaDB:
        """The source server."""
        return self.pair.source

    @property
    def target(self) -> LocalMariaDB:
        """The target server."""
        return self.pair.target

    @property
    def checkpoint_table(self) -> str:
        """The move's checkpoint table, qualified (in its state schema)."""
        return f"`{self.state_database}`._tablemover_checkpoint"

    def src(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as root in the source schema."""
        return self.source.execute(f"USE `{self.database}`", *statements)

    def tgt(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as root in the target schema."""
        return self.target.execute(f"USE `{self.target_database}`", *statements)

    def config_text(self, tables: list[str], **sections: dict[str, Any]) -> str:
        """A config for this move; ``sections`` override keys, e.g. move={"chunk_size": 100}."""
        move: dict[str, Any] = {
            "name": self.name,
            "database": self.database,
            "target_database": self.target_database,
            "state_database": self.state_database,
            "tables": tables,
            **self.move_defaults,
            **sections.get("move", {}),
        }
        others = {k: v for k, v in sections.items() if k != "move"}
        if self.replica is not None and "replica" not in others:
            others["replica"] = {"host": "127.0.0.1", "port": self.replica.port}
        return pair_config(self.pair, self.workdir, move, **others)

    def config(self, tables: list[str], **sections: dict[str, Any]) -> Path:
        """Write :meth:`config_text` to a file and return its path."""
        path = self.workdir / "move.toml"
        path.write_text(self.config_text(tables, **sections))
        return path

    def cli(
        self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tablemover ARGS`` as a subprocess and capture its output."""
        full_env = {**os.environ, **self.extra_env, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "tablemover", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``tablemover ARGS`` in the background; output goes to a log file in workdir."""
        full_env = {**os.environ, **self.extra_env, **(env or {})}
        log = open(self.workdir / "daemon.log", "a")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tablemover", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
        )
        self.procs.append(proc)
        return proc


def make_move_env(pair: LocalPair, workdir: Path) -> MoveEnv:
    """A move with schemas of its own (source created; target and state made by the daemon)."""
    suffix = uuid.uuid4().hex[:10]
    env = MoveEnv(pair, f"tm_{suffix}", f"tm_{suffix}_dst", workdir, state_database=f"tm_{suffix}_state")
    pair.source.execute(f"CREATE DATABASE `{env.database}`")
    return env


def drop_move_schemas(env: MoveEnv) -> None:
    """Drop every schema of ``env`` on both servers."""
    env.source.execute(f"DROP DATABASE IF EXISTS `{env.database}`")
    env.target.execute(f"DROP DATABASE IF EXISTS `{env.target_database}`")
    for server in (env.source, env.target):
        server.execute(f"DROP DATABASE IF EXISTS `{env.state_database}`")


def _new_move(pair: LocalPair, tmp_path: Path) -> Iterator[MoveEnv]:
    env = make_move_env(pair, tmp_path)
    yield env
    drop_move_schemas(env)


@pytest.fixture
def move(pair: LocalPair, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move on the FULL-metadata pair."""
    yield from _new_move(pair, tmp_path)


@pytest.fixture(params=[1, 4], ids=["copy1", "copy4"])
def fault_move(fault_pair: LocalPair, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MoveEnv]:
    """A fresh move on the fault pair; whatever a failed test left behind is put right after it.

    Every fault test runs twice: with the serial copy (``copy_threads = 1``) and with four parallel
    copy streams, each with a target connection of its own (issue #23)."""
    moves = _new_move(fault_pair, tmp_path)
    env = next(moves)
    env.move_defaults["copy_threads"] = request.param
    yield env
    for proc in env.procs:  # a daemon a failed test left running would hold its move's lock
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    for server in (fault_pair.source, fault_pair.target):
        if not server.running:  # the test failed while the server was down
            server.restart()
    fault_pair.target.execute("SET GLOBAL innodb_lock_wait_timeout = DEFAULT")
    next(moves, None)


@pytest.fixture
def window_move(window_pair: LocalPair, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move on the rollback-window pair; a daemon a failed test left running is killed."""
    moves = _new_move(window_pair, tmp_path)
    env = next(moves)
    yield env
    for proc in env.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    next(moves, None)


@pytest.fixture
def any_move(any_pair: LocalPair, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move, parametrised over FULL and MINIMAL row metadata."""
    yield from _new_move(any_pair, tmp_path)


@dataclass
class ReadTrio:
    """A source, its GTID replica (log_slave_updates, like every LocalMariaDB) and a target."""

    pair: LocalPair
    replica: LocalMariaDB


@pytest.fixture(scope="session")
def read_trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadTrio]:
    """Source + target + a replica of the source the move can read from (issue #24). The primary
    and the replica count rows read per table (userstat), so a test can tell where rows were read."""
    pair = _start("FULL", tmp_path_factory, name="read", extra_args=("--userstat=ON",))
    replica = LocalMariaDB(
        tmp_path_factory.mktemp("read-replica"),
        server_id=5,
        extra_args=("--skip-slave-start", "--report-host=127.0.0.1", "--userstat=ON"),
    )
    replica.install()
    replica.start()
    try:
        replicate(replica, pair.source)
        grant_reader(replica)
        yield ReadTrio(pair, replica)
    finally:
        replica.stop()
        pair.stop()


@pytest.fixture
def read_move(read_trio: ReadTrio, tmp_path: Path) -> Iterator[MoveEnv]:
    """A fresh move that reads from the trio's replica; whatever a failed test left is put right."""
    moves = _new_move(read_trio.pair, tmp_path)
    env = next(moves)
    env.replica = read_trio.replica
    yield env
    for proc in env.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    if not read_trio.replica.running:
        read_trio.replica.restart()
    read_trio.replica.execute("START SLAVE")
    next(moves, None)
