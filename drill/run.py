"""Crash drill: SIGKILL ``tablemover run`` under write load, restart it, and prove zero divergence.

Run as ``.venv/bin/python -m drill.run [--rounds N] [--rows R] [--seed S] [--out FILE]``. It starts one
private source and target ``mariadbd`` pair under a temporary directory (never the system server) for
the whole drill and removes it at the end, also on Ctrl-C or SIGTERM. Each round:

1. creates fresh schemas ``drill_<n>`` (source) and ``drill_<n>_dst`` (target) with 2 or 3
   sysbench-shaped tables of ``--rows`` rows;
2. writes to them for the whole move: sysbench ``oltp_write_only`` on ``sbtest1``/``sbtest2`` and,
   in 3-table rounds, a built-in Python generator on ``sbtest3`` (key-changing updates and inserts
   of new keys, which ``oltp_write_only`` never does). Without sysbench (not installable) the
   Python generator writes every table, and the output says so;
3. runs ``tablemover run`` and SIGKILLs it once or twice: at a targeted fault point
   (``TABLEMOVER_FAULTS``), or at a uniformly random instant of its expected run time; then restarts
   it without faults until it exits 0 (at most ``MAX_RESTARTS`` restarts);
4. checks, all of which must pass: the final exit 0; ``tablemover verify`` exits 0; an ordered dump
   of every renamed source table equals the target table row by row (plain PyMySQL, no tablemover
   code); ``pt-table-sync --print`` prints nothing (when percona-toolkit is installed); the source
   binlog holds exactly one RENAME of the round's tables; the checkpoint's transition rows follow the
   spec's state graph, hold RENAMED and HOOK_FIRED once and end with HOOK_FIRED, DONE; the
   on-success hook ran, and not again after HOOK_FIRED was written.

Window rounds (every ``--window-every``-th round, default every other one) run the same move with a
rollback window (``rollback_window_s``) and go on after the cutover:

5. at WINDOW_OPEN, with nothing writing anywhere (the source load ended at the cutover, the target
   load has not started), the forward checks of step 4 run on the data (verify, dump diff,
   pt-table-sync): every write the source acknowledged is on the target;
6. the application writes to the *target*: sysbench and the Python generator as in step 2, plus a
   writer of unique inserts, updates and deletes whose commits returned (acknowledged writes);
7. rollback rounds ask ``tablemover rollback`` and SIGKILL the daemon at one of the window's fault
   points (``state.WINDOW_OPEN`` ... ``state.ROLLED_BACK``, cycled) and, every other rollback round,
   also at a random instant of the window phase; the drill restarts ``tablemover run`` until it
   exits 0 and asks for the rollback again whenever a restart is back in WINDOW_OPEN (a request
   dies with the process that took it). Then: the last state is ROLLED_BACK; every source table
   (original name) equals the target's ``_<t>_rolledback`` row by row; every acknowledged target
   write is on the source; the source binlog holds one forward RENAME and one RENAME back, the
   target's binlog one RENAME away; the transitions follow the window's state graph; on-rollback's
   attempts increase and the last is the one ROLLED_BACK records;
8. elapse rounds (every fifth window round) use a short window, SIGKILL the daemon at a random
   instant while the target is written, stop the target writes, wait until the source's renamed
   tables equal the target's tables while the state is still WINDOW_OPEN, then let the window
   elapse: the move ends at DONE (``... HOOK_FIRED, WINDOW_OPEN, DONE``) and step 4's checks run on
   the final data (the target's writes included), with no RENAME on the target.

Replica rounds (9, 17, ..., or all with ``--only-kind replica``) watch a GTID replica of the target
that the drill starts the first time one runs: SIGKILLed while the replica holds the copy and while
the cutover waits for it, they end with the replica identical to the target
(``drill/rounds/replica.py``).

Read-replica rounds (issue #24; 5, 13, 21, ..., or all with ``--only-kind read_replica``) move
reading rows and the binlog from a GTID replica of the *source* (``[replica]``) that the drill starts
the first time one runs; the RENAME stays on the primary. Their kills are a forward round's; in
half of them the drill also stops the replica's SQL thread mid-copy until the daemon says it waits
for it. Beyond the forward checks, ``tablemover status`` must have said it reads from the
replica, and the move user must have read its rows there, not on the primary
(``drill/rounds/read_replica.py``).

It prints a table of rounds and a final ``N passed, M failed`` line, writes the same as JSON to
``--out`` (the daemon logs of failed rounds go to ``<out stem>-logs/`` beside it) and exits 0 only when
every round passed.

This module is the entry point: the command line, the server pair, the schedule of rounds and the
report. A round is :func:`drill.rounds.run_round`; what differs between forward, rollback and elapse
rounds lives in one module each under ``drill/rounds/`` (the registry, ``drill/rounds/__init__.py``,
picks a round's kind). The shared parts: ``common`` (the processes the drill owns, its state),
``db`` (plain PyMySQL reads, binlog scans), ``load`` (sysbench, the Python generator, acknowledged
writes), ``kills`` (the forward kill plan), ``daemon`` (``tablemover run`` processes and restarts),
``window`` (the window phase), ``checks`` (the independent checks) and ``report`` (the table).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from loadkit import LoadError, ensure_sysbench

from drill.common import Children, Drill, DrillError
from drill.read_replica import stop_read_replica
from drill.report import format_details, format_table
from drill.rounds import ANY_SLOT, Slot, by_name, pick, run_round
from drill.rounds.windowed import ELAPSE_EVERY
from tablemover.local.mariadb import LocalPair, grant_mover, make_tls_files, require_x509, start_pair

DEFAULT_ROUNDS = 20
DEFAULT_ROWS = 20_000
DEFAULT_OUT = "bench-results/drill.json"
# Source transactions per second of the write load. The daemon applies about 5,000 sysbench
# oltp_write_only transactions/s here; two unthrottled sysbench threads commit more than that on
# these non-durable throwaway servers, so the apply lag would only grow and the cutover gate
# (lag < 1 s) would never open. At 2,000/s a restart catches up on the backlog of a kill within a
# second or two.
DEFAULT_RATE = 2000
SCHEMA_GRANT = "drill\\_%"  # every schema the drill creates starts with drill_
DEFAULT_WINDOW_EVERY = 2


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops everything


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m drill.run", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds (default %(default)s)")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows per table (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    p.add_argument(
        "--rate",
        type=int,
        default=DEFAULT_RATE,
        help="write transactions/s of the load (default %(default)s)",
    )
    p.add_argument(
        "--load",
        choices=("auto", "sysbench", "python"),
        default="auto",
        help="auto: sysbench (installed if missing), else the built-in Python generator",
    )
    p.add_argument(
        "--row-metadata", choices=("FULL", "MINIMAL"), default="FULL", help="the servers' binlog_row_metadata"
    )
    p.add_argument(
        "--window-every",
        type=int,
        default=DEFAULT_WINDOW_EVERY,
        metavar="N",
        help="every Nth round runs with a rollback window (rolls back, or every "
        f"{ELAPSE_EVERY}th such round lets it elapse); 0: none (default %(default)s)",
    )
    p.add_argument(
        "--copy-threads",
        type=int,
        default=None,
        metavar="N",
        help="every round's move copies with N streams ([move] copy_threads; default: each round "
        "kind's own, 4 for the parallel rounds, the daemon's default for the others)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="servers with TLS certificates of a throwaway CA and require_secure_transport=ON, the "
        'move user REQUIRE X509, every round\'s move with tls_mode = "verify_identity" and a client '
        "certificate (the drill's own connections are root over the unix sockets)",
    )
    p.add_argument(
        "--only-kind",
        choices=[k.name for k in ANY_SLOT],
        default=None,
        metavar="KIND",
        help="every round is of this kind ("
        + ", ".join(k.name for k in ANY_SLOT)
        + "; no window rounds then); default: the schedule picks each round's kind",
    )
    args = p.parse_args(argv)
    if args.only_kind is not None:
        args.window_every = 0  # the window kinds have no round left to run
    if args.copy_threads is not None and not 1 <= args.copy_threads <= 32:
        p.error("--copy-threads must be between 1 and 32")
    for name in ("rounds", "rows", "rate"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.window_every < 0:
        p.error("--window-every must be 0 (no window rounds) or more")
    return args


def choose_load(mode: str) -> tuple[str | None, str]:
    """(sysbench path or None, a description of the load)."""
    if mode == "python":
        return None, "built-in Python generator (--load python)"
    path, how = ensure_sysbench()
    if path is None:
        if mode == "sysbench":
            raise DrillError(f"--load sysbench, but {how}")
        return None, f"built-in Python generator, because {how}"
    return path, how


def write_json(out: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``out`` (creating its directory)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server pair, run every round, print and write the results."""
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    rng = random.Random(seed)
    out = Path(args.out)
    logs_dir = out.with_name(f"{out.stem}-logs")  # the daemon logs of failed rounds
    shutil.rmtree(logs_dir, ignore_errors=True)  # from an earlier drill: they would mislead
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="tablemover-drill-"))
    children = Children()
    pair: LocalPair | None = None
    drill: Drill | None = None
    rounds: list[dict[str, Any]] = []
    payload: dict[str, Any] = {}
    try:
        sysbench, load_desc = choose_load(args.load)
        if sysbench is None:
            banner = "!" * 100
            print(f"{banner}\n!!! WRITE LOAD: {load_desc}\n!!! (not sysbench)\n{banner}", file=sys.stderr)
        pt = shutil.which("pt-table-sync")
        print(
            f"drill: {args.rounds} rounds, {args.rows:,} rows a table, "
            f"load {load_desc} at {args.rate} txn/s, "
            + (
                f"rollback window every {args.window_every} rounds, "
                if args.window_every
                else "no window rounds, "
            )
            + f"seed {seed}, pt-table-sync {'yes' if pt else 'not installed (skipped)'}",
            file=sys.stderr,
        )
        workdir = root / "work"
        workdir.mkdir()
        tls_files = make_tls_files(root / "pki") if args.tls else None
        pair = start_pair(
            row_metadata=args.row_metadata,
            root=root / "servers",
            extra_args=tls_files.server_args() if tls_files is not None else (),
        )
        grant_mover(pair, SCHEMA_GRANT, window=args.window_every > 0)
        drill = Drill(pair, workdir, children, args.rows, args.rate, seed, sysbench, pt)
        if args.copy_threads is not None:
            drill.move_keys["copy_threads"] = args.copy_threads
        if tls_files is not None:
            # The servers then refuse any connection of the move user that is not TLS with the
            # client certificate: a round that passes had every connection of every role encrypted.
            require_x509(pair)
            drill.server_keys = tls_files.client_keys("verify_identity")
        payload = {
            "seed": seed,
            "rounds_planned": args.rounds,
            "rows_per_table": args.rows,
            "rate_txn_per_s": args.rate,
            "load": load_desc,
            "load_is_sysbench": sysbench is not None,
            "pt_table_sync": bool(pt),
            "row_metadata": args.row_metadata,
            "window_every": args.window_every,
            "copy_threads": args.copy_threads,
            "only_kind": args.only_kind,
            "tls": "verify_identity, require_secure_transport=ON, REQUIRE X509" if args.tls else "off",
            "mariadbd": str(pair.source.execute("SELECT VERSION()")[0][0]),
            "rounds": rounds,
        }
        targeted = windows = 0
        for number in range(1, args.rounds + 1):
            window = None
            if args.window_every and number % args.window_every == 0:
                windows += 1
                window = windows
            slot = Slot(number, window)
            kind = by_name(args.only_kind) if args.only_kind else pick(slot)
            # The draws from rng stay in this order (forward kills, table count, the kind's later
            # kills): a seed then gives the rounds it always gave.
            kills = kind.forward_kills(slot, targeted, rng)
            targeted += number % 2
            table_count = rng.choice((2, 3))
            later_kills = kind.plan(slot, rng)
            try:
                record = run_round(drill, kind, number, kills, later_kills, table_count)
            except LoadError as exc:
                record = {
                    "round": number,
                    "tables": [],
                    "window": kind.label,
                    "result": "FAIL",
                    "failures": [f"drill error: {exc}"],
                }
            finally:
                children.stop_all()
            if record["result"] != "PASS":
                logs = logs_dir / f"round-{number}"
                shutil.copytree(workdir / f"round-{number}", logs, ignore=shutil.ignore_patterns("*.sock"))
                record["logs"] = str(logs)
            rounds.append(record)
            print(
                f"round {number}/{args.rounds}: {record['result']} "
                f"kill {record.get('kill_points', '?')}, {record.get('restarts', '?')} restarts, "
                f"{record.get('seconds', '?')} s"
                + (f" -- {record['failures'][0][:300]}" if record.get("failures") else ""),
                file=sys.stderr,
            )
            payload["wall_s"] = round(time.monotonic() - started, 1)
            write_json(out, payload)
    except KeyboardInterrupt:
        print("interrupted: stopping the load, the daemon and the servers", file=sys.stderr)
        return 130
    except SystemExit:
        print("terminated: stopping the load, the daemon and the servers", file=sys.stderr)
        raise
    except LoadError as exc:
        print(f"drill failed: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if drill is not None:
            # Before the pair's directory, which holds their files, goes.
            if drill.replica is not None:
                drill.replica.stop()
            stop_read_replica(drill)
        if pair is not None:
            pair.cleanup()
        shutil.rmtree(root, ignore_errors=True)

    passed = sum(1 for r in rounds if r["result"] == "PASS")
    failed = len(rounds) - passed
    wall = round(time.monotonic() - started, 1)
    payload.update({"passed": passed, "failed": failed, "wall_s": wall})
    write_json(out, payload)
    print(format_table(rounds, with_pt=bool(payload.get("pt_table_sync"))))
    details = format_details(rounds)
    if details:
        print("\n" + details)
    if not payload.get("load_is_sysbench"):
        print(f"\nNOTE: the write load was the {payload.get('load')}, not sysbench")
    print(f"\nwrote {out}; {wall} s in all ({wall / max(len(rounds), 1):.1f} s a round), seed {seed}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and rounds else 1


if __name__ == "__main__":
    sys.exit(main())
