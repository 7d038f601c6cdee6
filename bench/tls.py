"""The cost of TLS: copy, backlog apply and keep-up over ``verify_identity`` TLS beside plain text.

Issue #22 ("Cost"): ``make bench`` reports copy and keep-up over TLS beside the plain figures, same
run. This part starts a pair of its own whose servers serve TLS with a throwaway CA
(:func:`tablemover.local.mariadb.make_tls_files`, the test suite's PKI) but do not require it, so
that the same servers take both kinds of connection:

* ``tls`` samples connect as the move user ``mover``, created ``REQUIRE X509`` on both servers,
  with ``tls_mode = "verify_identity"``, the CA and the client certificate: the servers refuse any
  connection of that user that is not TLS with the certificate, so a TLS sample that completes had
  every connection encrypted (copy, writer, lag monitor, binlog stream, checksum gate, lock);
* ``plain`` samples connect as ``mover_plain`` (same password and grants, no requirement) with
  ``tls_mode = "disabled"``.

Each sample is also checked against the daemon's own account: its preflight lines must say what
its mode means (encrypted and verified, or not encrypted), and in the keep-up samples so must its
``status`` for every connection, the binlog stream included. (The servers' ``Ssl_accepts`` counter
is no help: MariaDB 10.11 counts every connection in it, the bench's unix-socket ones too.)

The machine is small and shared, so the two kinds are measured alternately, plain, TLS, plain,
TLS, ..., each measurement a fresh schema on the same servers; the figure is the ratio of the
medians (TLS / plain), every sample in the JSON. Measured (bench/README.md "TLS"):

* ``copy``: :func:`bench.copyapply.timed_copy`, the copy part's measurement (rows/s of the copy phase).
* ``binlog``: :func:`bench.copyapply.bench_binlog`, the binlog part's (events/s a resumed daemon
  applies from a backlog), and its same-run reference, the parse-only reader, also over TLS in the
  TLS samples (it connects through the daemon's own factory, :func:`tablemover.tls.pymysql_connector`).
* ``keepup``: :func:`bench.keepup.sysbench_move` under one unthrottled sysbench connection: the
  keep-up ratio, the lag, the rate the source sustained and the daemon's CPU per applied transaction
  (on 2 cores, TLS's CPU shows there first). The daemon's ``status`` must show every connection,
  the binlog stream included, encrypted and verified (TLS) or not encrypted (plain).

The server's own ``INSERT ... SELECT`` (the copy part's reference) never leaves the server, so it has
no TLS counterpart; native replication over TLS (``MASTER_SSL``) is not measured here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    ServerKeys,
    median,
    rate,
    stop_all_daemons,
)
from bench.copyapply import bench_binlog, timed_copy
from bench.keepup import sysbench_move
from tablemover.local.mariadb import (
    MOVER_PASSWORD,
    MOVER_USER,
    SOURCE_GRANTS,
    TARGET_GRANTS,
    LocalPair,
    TlsFiles,
    grant_mover,
    make_tls_files,
    require_x509,
    start_pair,
)

MODES = ("plain", "tls")
PLAIN_USER = "mover_plain"
DEFAULT_ROUNDS = 5  # copy and binlog: 5 samples of each mode
DEFAULT_KEEPUP_ROUNDS = 3
DEFAULT_COPY_ROWS = 200_000
DEFAULT_BINLOG_ROWS = 20_000
DEFAULT_TRANSACTIONS = 40_000  # about 1.5 s of apply: 20,000 was too short against the noise
DEFAULT_KEEPUP_SECONDS = 10
DEFAULT_KEEPUP_ROWS = 50_000


def mode_keys(mode: str, files: TlsFiles) -> ServerKeys:
    """The server-section keys of a sample of ``mode`` (both servers get the same)."""
    if mode == "plain":
        return {"user": PLAIN_USER, "tls_mode": "disabled"}
    return files.client_keys("verify_identity")


def start_tls_pair(root: Path, schema_grant: str) -> tuple[LocalPair, TlsFiles]:
    """A source/target pair serving TLS (not requiring it), ``mover`` REQUIRE X509, ``mover_plain``
    without a requirement, both with the move user's grants on ``schema_grant``."""
    files = make_tls_files(root / "pki")
    pair = start_pair(
        row_metadata="FULL",
        root=root / "servers",
        extra_args=files.server_args(require_secure_transport=False),
    )
    try:
        grant_mover(pair, schema_grant)
        require_x509(pair)
        for server, grants in ((pair.source, SOURCE_GRANTS), (pair.target, TARGET_GRANTS)):
            server.execute(
                f"CREATE USER '{PLAIN_USER}'@'%' IDENTIFIED BY '{MOVER_PASSWORD}'",
                *(g.format(user=PLAIN_USER, db=schema_grant) for g in grants),
            )
    except BaseException:
        pair.cleanup()
        raise
    return pair, files


def check_preflight(mode: str, figures: dict[str, Any], what: str) -> None:
    """The daemon's own account of its connections (``tls``: its preflight lines) must fit ``mode``."""
    for role in ("source", "target"):
        state = figures.get("tls", {}).get(role)
        if state is None:
            raise BenchError(f"{what}: the daemon logged no preflight line for the {role} connection")
        ok = (state["encrypted"] and state["verified"]) if mode == "tls" else not state["encrypted"]
        if not ok:
            raise BenchError(f"{what}: {mode} sample, but the daemon's preflight says {role} {state}")


def check_status_tls(mode: str, status: dict[str, Any], what: str) -> dict[str, Any]:
    """A running daemon's ``status`` ``tls``: every connection (the binlog stream's too) fits ``mode``."""
    fields: dict[str, Any] = status.get("tls", {})
    for role in ("source", "target"):
        connections = fields.get(role, {}).get("connections", {})
        if role == "source" and "binlog" not in connections:
            raise BenchError(f"{what}: status shows no binlog connection: {fields}")
        for name, conn in connections.items():
            ok = (conn["encrypted"] and conn["verified"]) if mode == "tls" else not conn["encrypted"]
            if not ok:
                raise BenchError(f"{what}: {mode} sample, but the {role} {name} connection is {conn}")
    return fields


def drop_schemas(pair: LocalPair, *names: str) -> None:
    """Drop a sample's schemas on both servers, so every sample starts from the same small servers."""
    for server in (pair.source, pair.target):
        for name in names:
            server.execute(f"DROP DATABASE IF EXISTS `{name}`")


def summary(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Per figure: the median of each mode, the ratio TLS / plain of the medians, and the median of
    each round's own ratio (its TLS sample over the plain one just before it: the two closest in
    time, so a check of the first against the machine's drift)."""
    out: dict[str, Any] = {}
    for key in keys:
        medians = {m: median([float(s[key]) for s in samples if s["mode"] == m]) for m in MODES}
        by_round: dict[int, dict[str, float]] = {}
        for s in samples:
            by_round.setdefault(int(s["round"]), {})[s["mode"]] = float(s[key])
        pairs = [rate(r["tls"], r["plain"]) for r in by_round.values() if len(r) == 2]
        out[key] = {
            "plain_median": round(medians["plain"], 3),
            "tls_median": round(medians["tls"], 3),
            "ratio_tls_plain": round(rate(medians["tls"], medians["plain"]), 3),
            "round_ratios": [round(r, 3) for r in pairs],
            "round_ratio_median": round(median(pairs), 3),
        }
    return out


def alternate(
    rounds: int, measure: Callable[[str, int], dict[str, Any]], keys: tuple[str, ...]
) -> dict[str, Any]:
    """``measure(mode, round)`` for plain, TLS, plain, TLS, ...: every sample and the summary."""
    samples = []
    for i in range(rounds):
        for mode in MODES:
            samples.append({"mode": mode, "round": i, **measure(mode, i)})
    return {"rounds": rounds, **summary(samples, keys), "samples": samples}


def bench_tls(
    root: Path,
    schema_grant: str,
    sysbench: str | None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    copy_rows: int = DEFAULT_COPY_ROWS,
    binlog_rows: int = DEFAULT_BINLOG_ROWS,
    transactions: int = DEFAULT_TRANSACTIONS,
    keepup_rounds: int = DEFAULT_KEEPUP_ROUNDS,
    keepup_seconds: int = DEFAULT_KEEPUP_SECONDS,
    keepup_rows: int = DEFAULT_KEEPUP_ROWS,
    sample_s: float = 0.1,
) -> dict[str, Any]:
    """Copy, backlog apply and keep-up, plain and over TLS alternately (module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    workdir = root / "work"
    workdir.mkdir(exist_ok=True)
    pair, files = start_tls_pair(root, schema_grant)
    try:

        def copy(mode: str, i: int) -> dict[str, Any]:
            db = f"bench_tls_copy_{mode}_{i}"
            try:
                figures = timed_copy(pair, workdir, db, copy_rows, mode_keys(mode, files))
            finally:
                stop_all_daemons()
            check_preflight(mode, figures, db)
            drop_schemas(pair, db, f"{db}_dst")
            return figures

        def binlog(mode: str, i: int) -> dict[str, Any]:
            db = f"bench_tls_binlog_{mode}_{i}"
            try:
                figures = bench_binlog(pair, workdir, binlog_rows, transactions, db, mode_keys(mode, files))
            finally:
                stop_all_daemons()
            check_preflight(mode, figures, db)
            drop_schemas(pair, db, f"{db}_dst")
            return figures

        def keepup(mode: str, i: int) -> dict[str, Any]:
            assert sysbench is not None
            db = f"bench_tls_keepup_{mode}_{i}"
            seen: dict[str, Any] = {}
            try:
                figures = sysbench_move(
                    pair,
                    workdir,
                    sysbench,
                    db,
                    keepup_rows,
                    keepup_seconds,
                    sample_s,
                    server_keys=mode_keys(mode, files),
                    on_caught_up=lambda st: seen.update(check_status_tls(mode, st, db)),
                )
            finally:
                stop_all_daemons()
            drop_schemas(pair, db, f"{db}_dst")
            daemon_cores = float(figures["cpu_cores_during_load"]["daemon"])
            keep = (
                "keepup_ratio",
                "committed_txn_per_s",
                "applied_txn_per_s",
                "lag_max_s",
                "lag_p99_s",
                "catch_up_s",
                "cpu_cores_during_load",
                "load_s",
                "peak_rss_mb",
            )
            return {
                **{k: figures[k] for k in keep},
                # CPU the daemon spent per transaction it applied during the load.
                "daemon_cpu_us_per_txn": round(rate(daemon_cores, figures["applied_txn_per_s"]) * 1e6, 1),
                "tls_status": seen,
            }

        out: dict[str, Any] = {
            "servers": "a pair of its own serving TLS (require_secure_transport=OFF); plain samples as "
            f"{PLAIN_USER} with tls_mode disabled, TLS samples as {MOVER_USER} (REQUIRE X509) with "
            "tls_mode verify_identity and a client certificate",
            "order": "alternated: plain, tls, plain, tls, ... (each sample a fresh schema)",
        }
        version = pair.source.execute("SHOW GLOBAL VARIABLES LIKE 'version_ssl_library'")
        out["server_ssl_library"] = str(version[0][1]) if version else ""
        out["copy"] = {"rows": copy_rows, **alternate(rounds, copy, ("rows_per_s",))}
        out["binlog"] = {
            "table_rows": binlog_rows,
            "transactions": transactions,
            **alternate(rounds, binlog, ("apply_events_per_s", "parse_only_events_per_s")),
        }
        if sysbench is None:
            out["keepup"] = {"skipped": "sysbench is not installed"}
        elif keepup_rounds and keepup_seconds:
            out["keepup"] = {
                "table_rows": keepup_rows,
                "load": f"sysbench oltp_write_only, 1 table, --threads=1 --rate=0, {keepup_seconds} s",
                **alternate(
                    keepup_rounds,
                    keepup,
                    (
                        "keepup_ratio",
                        "committed_txn_per_s",
                        "applied_txn_per_s",
                        "lag_p99_s",
                        "daemon_cpu_us_per_txn",
                    ),
                ),
            }
        return out
    finally:
        stop_all_daemons()
        pair.cleanup()
        shutil.rmtree(root, ignore_errors=True)
