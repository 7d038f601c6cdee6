"""Reading from a replica over TLS (issue #24: ``[replica]`` takes [source]'s keys, TLS included).

The TLS pair's source and target refuse plain TCP (require_secure_transport) and a replica of the
source does too, with the mover user ``REQUIRE X509`` on all three; the replica replicates from the
source over TLS. A move under writes that reads from the replica and completes therefore had every
connection to every server encrypted; its status says each connection to the replica was verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_read_replica import finish, rows_read
from test_replica_throttle import caught_up, status_json, wait_status
from test_tls import assert_hex_equal, seed, tls_config

from conftest import MoveEnv, TlsPair
from support import WriteLoad, wait_for_log
from tablemover.local.mariadb import MOVER_USER, LocalMariaDB, grant_reader, replicate


@pytest.fixture(scope="module")
def tls_replica(tls_pair: TlsPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMariaDB]:
    """A GTID replica of the TLS pair's source, itself TLS-only, replicating over verified TLS."""
    files = tls_pair.files
    replica = LocalMariaDB(
        tmp_path_factory.mktemp("tls-read-replica"),
        server_id=5,
        extra_args=(*files.server_args(), "--skip-slave-start", "--report-host=127.0.0.1", "--userstat=ON"),
    )
    replica.install()
    replica.start()
    try:
        tls_pair.pair.source.execute("SET GLOBAL userstat = ON")
        replicate(replica, tls_pair.pair.source)
        # The source refuses plain TCP, its replication account included: replicate over TLS.
        replica.execute(
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_SSL = 1, MASTER_SSL_CA = '{files.ca}', "
            "MASTER_SSL_VERIFY_SERVER_CERT = 1",
            "START SLAVE",
        )
        grant_reader(replica)
        replica.execute("SET SESSION sql_log_bin = 0", f"ALTER USER '{MOVER_USER}'@'%' REQUIRE X509")
        yield replica
    finally:
        replica.stop()


def test_a_move_reads_from_a_replica_over_verified_tls(
    tls_move: MoveEnv, tls_pair: TlsPair, tls_replica: LocalMariaDB
) -> None:
    move = tls_move
    seed(move, ["a", "b"], 10_000)
    caught_up(tls_replica, move.source)
    b_before = rows_read(move.source, move.database, "b")
    cfg = tls_config(
        move,
        tls_pair,
        ["a", "b"],
        replica={"host": "127.0.0.1", "port": tls_replica.port, **tls_pair.server_keys("verify_identity")},
        move={"chunk_size": 200, "postpone_cutover": True},
    )
    checked = move.cli("check", "-c", str(cfg))
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    load = WriteLoad(move.source, move.database, ["a"], key_space=10_000, seed=22, pause_s=0.002).start()
    daemon = move.popen("run", "-c", str(cfg))
    doc: dict[str, Any] = {}
    try:
        doc = wait_status(move, cfg, daemon, lambda d: d.get("state") == "COPYING", "the copy")
        assert doc["reading_from"] == f"replica 127.0.0.1:{tls_replica.port}", doc
        wait_for_log(move, "cutover postponed", daemon, timeout=300)
        doc = status_json(move, cfg)
    finally:
        ops = load.stop()
    replica_tls = doc["tls"]["replica"]
    assert replica_tls["mode"] == "verify_identity" and replica_tls["encrypted"] is True, doc["tls"]
    assert {"copy", "binlog"} <= set(replica_tls["connections"]), replica_tls
    for name, conn in replica_tls["connections"].items():
        assert conn["encrypted"] and conn["verified"] and conn["version"].startswith("TLSv1."), (name, conn)
    finish(move, cfg, daemon)
    assert ops > 50 and not load.errors, load.errors[:3]
    assert_hex_equal(move, {"_a_moved": "a", "_b_moved": "b"})
    # The static table b was read on the replica only.
    assert rows_read(move.source, move.database, "b") == b_before
