"""The ``tablemover`` command line.

Exit codes: 0 done; 1 runtime failure (resumable: run again); 2 bad config or failed preflight
(nothing was changed); 3 refused for safety (an operator must decide).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from asyncmy.errors import MySQLError

from tablemover import __version__, log, tls
from tablemover import checkpoint as cpstore
from tablemover.config import Config, example_config, load_config
from tablemover.db import ACCESS_DENIED, close, connect, error_code
from tablemover.errors import BadInput, MoveFailed, PreflightError, TablemoverError
from tablemover.schema import resolve_names

EXIT_DIFFERENT = 4

EXIT_HELP = """\
exit codes:
  0  done (verify: the tables are equal)
  1  runtime failure; the checkpoint is intact, run the same command again to resume
  2  bad input: configuration, failed preflight, a bad argument, no daemon running, another
     daemon already running, a declined or impossible prompt; nothing was changed
  3  refused for safety; the message says what was found and what an operator must decide
  4  verify: the tables differ (the differing keys are listed)
"""


def _load_resolved(path: str) -> Config:
    """The config with its names spelt as the servers store them (lower_case_table_names)."""
    return anyio.run(resolve_names, load_config(path))


def _add_config(p: argparse.ArgumentParser) -> None:
    default = os.environ.get("TABLEMOVER_CONFIG") or None
    p.add_argument(
        "-c",
        "--config",
        required=default is None,
        default=default,
        metavar="FILE",
        help="move configuration (TOML; default $TABLEMOVER_CONFIG); any key can be overridden by "
        "TABLEMOVER_<SECTION>__<KEY>",
    )


async def _run_move(config: Config, stop_before_cutover: bool, config_path: str) -> Any:
    from tablemover.service import serve

    return await serve(config, config_path=config_path, stop_before_cutover=stop_before_cutover)


def _checked_config(path: str) -> Config:
    """``load_config`` for `run` and `check`: also refuse a config others may change (exit 2) and
    warn when others may read it (it may hold passwords)."""
    from tablemover.secretfiles import exposure

    config = load_config(path)
    found = exposure(path, "config file")
    if found.refusals:
        raise BadInput(" ".join(found.refusals) + " Nothing was changed.")
    for warning in found.warnings:
        log.event(warning, logging.WARNING)
    # Names as the servers store them: only now, so a refused file never reaches a server.
    return anyio.run(resolve_names, config)


def _cmd_run(args: argparse.Namespace) -> int:
    config = _checked_config(args.config)
    log.set_context(move=config.move.name)
    result = anyio.run(_run_move, config, args.stop_before_cutover, args.config)
    log.event(
        result.message,
        state=result.state.value,
        rows_copied=result.rows_copied,
        events_applied=result.events_applied,
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from tablemover.preflight import preflight
    from tablemover.preflight.privileges import minimal_grant_script
    from tablemover.replicas import check_replicas

    config = _checked_config(args.config)
    # First, so it is printed whatever the checks find: a missing privilege is the usual failure.
    print(anyio.run(minimal_grant_script, config), flush=True)
    report = anyio.run(preflight, config)
    state = report.checkpoint.state.value if report.checkpoint else "new move"
    print(
        f"preflight passed: source {report.source_info.version}, target {report.target_info.version}; "
        f"{len(report.schemas)} table(s); {state}"
    )
    lines, problems = anyio.run(check_replicas, config)
    print("\n".join(lines))
    if problems:
        raise PreflightError("\n".join(["the watched replicas cannot be used:", *problems]))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from tablemover.control import daemon_listening, request

    config = load_config(args.config)
    if anyio.run(daemon_listening, config.socket_path):
        status = anyio.run(request, config.socket_path, "status")
        if not status.pop("ok", True):
            raise MoveFailed(f"the daemon could not answer `status`: {status.get('error', status)}")
    else:
        status = anyio.run(_status_from_checkpoint, _load_resolved(args.config))
    failed = status.get("state") == "FAILED"
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
    else:
        print("\n".join(status_text(status, config.move.name)))
    # A FAILED move needs an operator, like the run that stopped on it (exit 3).
    return 3 if failed else 0


def status_text(status: dict[str, Any], name: str) -> list[str]:
    """The text `status`: one headline with what matters, then the tables in config order."""
    state = status.get("state")
    if state is None:
        if status.get("cleaned_up"):
            return [f"move {name}: finished and cleaned up (the source tables are renamed away)"]
        return [f"move {name}: not started (no checkpoint on the target)"]
    if state == "FAILED":
        return [f"move {name}: FAILED  applied_gtid={status.get('applied_gtid')}", f"  {status['failure']}"]
    parts = [f"move {name}: {state}"]
    total = status.get("rows_total")
    if total:
        parts.append(
            f"{status.get('percent_copied', 0):.1f}% copied ({status['rows_copied']:,} of ~{total:,} rows)"
        )
    else:
        parts.append(f"{status.get('rows_copied', 0):,} rows copied")
    if status.get("rows_per_s"):
        parts.append(f"{status['rows_per_s']:,} rows/s")
    if status.get("eta_s") is not None and status.get("rows_per_s"):
        parts.append(f"ETA {_duration(int(status['eta_s']))}")
    if "lag_s" in status:
        parts.append(f"lag {status['lag_s']:.1f} s")
    if "backlog" in status:
        parts.append(f"backlog {status['backlog']}")
    lines = [", ".join(parts)]
    waiting = status.get("waiting_for") or ("paused by the operator" if status.get("paused") else "")
    if waiting:
        lines.append(f"  waiting: {waiting}")
    for blocker in status.get("cutover_blocked_by") or []:
        lines.append(f"  blocked by: {blocker}")
    for side, held in (("target", "the copy"), ("source", "the reverse writes")):
        for replica, r in (status.get(f"{side}_replicas") or {}).items():
            seen = f"lag {r['lag_s']:.2f} s" if r.get("lag_s") is not None else "lag unknown"
            if r.get("measured_by", "heartbeat") != "heartbeat":
                seen += f" by {r['measured_by']} (fallback)"
            why = f" ({r['problem']})" if r.get("problem") else ""
            holds = f", holds {held}" if r.get("holds_copy") else ""
            lines.append(f"  {side} replica {replica}: {seen}{why}{holds}")
    reading = status.get("read_replica")
    if status.get("reading_from") and (reading is not None or "replica" in status["reading_from"]):
        # Issue #24, only with [replica]: where rows and the binlog come from, and its state.
        line = f"  reading from: {status['reading_from']}"
        if reading and status["reading_from"].startswith("replica"):
            line += f", lag {reading['lag_s']:.2f} s" if reading.get("lag_s") is not None else ", lag unknown"
            line += f" ({reading['problem']})" if reading.get("problem") else ""
            line += ", holds the copy" if reading.get("holds_copy") else ""
        lines.append(line)
    if status.get("tls"):
        lines.append("  " + tls.status_line(status["tls"]))
    if "window_closes_in_s" in status:
        asked = "; rollback requested" if status.get("rollback_requested") else ""
        lines.append(
            f"  rollback window open: closes in {_duration(int(status['window_closes_in_s']))}, "
            f"reverse lag {status.get('reverse_lag_s', 0):.1f} s{asked} (`tablemover rollback` goes back)"
        )
    if status.get("origin", status.get("source")) == "checkpoint":
        lines.append(
            f"  (no daemon is running: figures from the checkpoint of {status.get('checkpoint_at')})"
        )
    for table, p in status.get("tables", {}).items():
        of = f" of ~{p['rows_total']:,}" if p.get("rows_total") and not p["done"] else ""
        built = f", deferred indexes added in {p['indexes_added_s']:.1f} s" if "indexes_added_s" in p else ""
        lines.append(
            f"  {table}: {p['rows_copied']:,}{of} rows copied{' (done)' if p['done'] else ''}{built}"
        )
    lines.append(f"  applied_gtid={status.get('applied_gtid')}")
    return lines


def _duration(seconds: int) -> str:
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{sec:02d}s" if minutes else f"{sec}s")


async def _status_from_checkpoint(config: Config) -> dict[str, Any]:
    conn = await connect(config.target, "target")
    try:
        cp = await cpstore.latest(conn, await cpstore.locate_move(conn, config.move), config.move.name)
    finally:
        await close(conn)
    if cp is None:
        return {
            "move": config.move.name,
            "state": None,
            "source": "checkpoint",
            "origin": "checkpoint",
            "cleaned_up": await _cleaned_up(config),
        }
    return {
        "move": cp.move_name,
        "state": cp.state.value,
        "source": "checkpoint",
        "applied_gtid": cp.applied_gtid,
        "drain_gtid": cp.drain_gtid,
        "rows_copied": cp.rows_copied,
        "events_applied": cp.events_applied,
        "hook_attempts": cp.hook_attempts,
        "checkpoint_at": cp.created_at,
        "writer": cp.writer,
        "origin": "checkpoint",
        "tables": {
            t: {"rows_copied": cp.progress[t].rows_copied, "done": cp.progress[t].done}
            for t in [*config.move.tables, *sorted(set(cp.progress) - set(config.move.tables))]
            if t in cp.progress
        },
        **(
            {"failure": cpstore.failed_message(cp), "failure_detail": cp.detail}
            if cp.state.value == "FAILED"
            else {}
        ),
    }


async def _cleaned_up(config: Config) -> bool:
    """No checkpoint, but the source shows the move's cutover: every table renamed away."""
    from tablemover.cutover import SourceTables, inspect_source

    return (await inspect_source(config)).verdict is SourceTables.RENAMED


def _cmd_verify(args: argparse.Namespace) -> int:
    from tablemover.verify import print_report, verify

    config = _load_resolved(args.config)
    report = anyio.run(verify, config, args.rechecks)
    print_report(report, as_json=args.json)
    return 0 if report.equal else EXIT_DIFFERENT


def _socket_command(cmd: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from tablemover.control import request

        config = load_config(args.config)
        extra = {"value": args.value} if cmd == "chunk-size" else {}
        reply = anyio.run(lambda: request(config.socket_path, cmd, **extra))
        print(reply.get("message") or reply.get("error"))
        if not reply.get("ok") and cmd == "abort" and "refused" in str(reply.get("error")):
            return 3
        # The daemon refusing a request is bad input from the operator's side, never a crash.
        return 0 if reply.get("ok") else 2

    return run


def _cmd_abort(args: argparse.Namespace) -> int:
    from tablemover.control import daemon_listening

    config = _load_resolved(args.config)
    if anyio.run(daemon_listening, config.socket_path):
        return _socket_command("abort")(args)
    from tablemover.maintenance import abort_offline

    print(anyio.run(abort_offline, config))
    return 0


ROLLBACK_POLL_S = 0.5


def _cmd_rollback(args: argparse.Namespace) -> int:
    from tablemover.control import daemon_listening, request

    config = _load_resolved(args.config)
    if not anyio.run(daemon_listening, config.socket_path):
        state = anyio.run(_status_from_checkpoint, config).get("state")
        if state == "ROLLED_BACK":
            print(f"move {config.move.name}: already rolled back")
            return 0
        raise BadInput(
            f"no daemon runs move {config.move.name!r} (state {state}): a rollback is done by the running "
            "daemon while its rollback window is open. Start it with `tablemover run` (it resumes an open "
            "window, or a rollback a crash interrupted) and ask again."
        )
    reply = anyio.run(lambda: request(config.socket_path, "rollback"))
    print(reply.get("message") or reply.get("error"))
    if not reply.get("ok"):
        return 2
    if args.no_wait:
        return 0
    return _wait_rolled_back(config, args.timeout)


def _wait_rolled_back(config: Config, timeout_s: float) -> int:
    """Follow the rollback until it ends: 0 rolled back, 3 declined or too late, 1 interrupted."""
    from tablemover.control import daemon_listening, request

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        status: dict[str, Any] = {}
        if anyio.run(daemon_listening, config.socket_path):
            # The daemon exits once ROLLED_BACK: a request racing its exit reads the checkpoint.
            with contextlib.suppress(TablemoverError):
                status = anyio.run(request, config.socket_path, "status")
        if not status.get("state"):
            status = anyio.run(_status_from_checkpoint, config)
            if status.get("state") != "ROLLED_BACK":
                if anyio.run(daemon_listening, config.socket_path):
                    time.sleep(ROLLBACK_POLL_S)  # still up: the request only raced something
                    continue
                print(f"the daemon stopped in {status.get('state')}; `tablemover run` resumes the rollback")
                return 1
        state = str(status.get("state"))
        if state != last:
            print(f"state {state}")
            last = state
        if state == "ROLLED_BACK":
            print(f"move {config.move.name}: rolled back; the source tables have their names back")
            return 0
        if state == "DONE":
            print("the rollback window closed before the rollback began; the move stays on the target")
            return 3
        if state == "WINDOW_OPEN" and not status.get("rollback_requested", True):
            print(
                "the rollback was declined (the on-before-rollback hook said no, or the target's RENAME "
                "kept failing; the daemon log says which); the move stays on the target and the window "
                "stays open"
            )
            return 3
        time.sleep(ROLLBACK_POLL_S)
    print(f"still rolling back after {timeout_s:g} s (state {last}); follow it with `tablemover status`")
    return 1


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from tablemover.maintenance import cleanup

    config = _load_resolved(args.config)
    if args.drop_source and not args.yes:
        question = (
            f"drop the renamed source tables {', '.join(config.move.renamed(t) for t in config.move.tables)} "
            f"in {config.move.database} on {config.source.address}? type 'drop' to confirm: "
        )
        if not sys.stdin.isatty():
            raise BadInput("cleanup --drop-source asks for confirmation on a terminal: pass --yes to confirm")
        try:
            answer = input(question)
        except EOFError:
            answer = ""
        if answer.strip() != "drop":
            print("nothing dropped")
            return 2
    for line in anyio.run(lambda: cleanup(config, drop_source=args.drop_source)):
        print(line)
    return 0


def _cmd_discard(args: argparse.Namespace) -> int:
    from tablemover.maintenance import discard

    config = _load_resolved(args.config)
    for line in anyio.run(lambda: discard(config, yes=args.yes)):
        print(line)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tablemover.demo import run_demo

    return run_demo(rows=args.rows, keep=args.keep, rollback=args.rollback, replica=args.replica)


def _chunk_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 10 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{value} is out of range: a chunk is 10 to 100000 rows")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tablemover",
        description=(
            "Move live MySQL/MariaDB tables from a source primary to a target primary: copy in "
            "chunks while applying the source binlog, then cut over with an atomic RENAME on the "
            "source. Every step is checkpointed on the target, so a killed daemon resumes."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tablemover {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe log lines shown (default INFO; DEBUG adds per-check and per-batch detail)",
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "text"],
        help="auto = JSON lines when stderr is not a terminal or under systemd, text otherwise",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str, description: str) -> Any:
        p = sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=EXIT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        _add_config(p)
        return p

    run = add(
        "run",
        _cmd_run,
        "start the move, or resume it from the target's checkpoint",
        "Run preflight checks, then start the move or resume it from the newest checkpoint row on "
        "the target. Runs until the move reaches its final state.\n\nExample configuration:\n\n"
        + example_config(),
    )
    run.add_argument(
        "--stop-before-cutover",
        action="store_true",
        help="copy and catch up, then exit 0 leaving the move in COPYING; a later `run` cuts over",
    )
    add(
        "check",
        _cmd_check,
        "run the preflight checks only; changes nothing",
        "Print the least grants the move needs on each server, as GRANT statements for <account> "
        "(table-level where the server allows), then connect to the servers (source, target and, "
        "when configured, the [replica] the move reads from) and run every preflight check "
        "(privileges, binlog settings, keys, foreign keys, triggers, target tables, the replica's "
        "replication) without changing anything. Exit 0 when the move could start, 2 with the list "
        "of problems otherwise; the grants are printed either way.",
    )
    add(
        "pause",
        _socket_command("pause"),
        "pause copying (the binlog apply goes on)",
        "Tell the running daemon to stop reading new chunks until `tablemover unpause`. The binlog "
        "apply continues, so the target keeps up with the source.",
    )
    add(
        "unpause", _socket_command("unpause"), "resume copying after `pause`", "Resume copying after `pause`."
    )
    chunk = add(
        "chunk-size",
        _socket_command("chunk-size"),
        "set the copy chunk size of the running daemon",
        "Set the rows per chunk the running daemon reads from now on (disables adaptive sizing).",
    )
    chunk.add_argument("value", type=_chunk_size, metavar="N", help="rows per chunk (10 to 100000)")
    add(
        "abort",
        _cmd_abort,
        "stop the move before the cutover; `run` resumes it later",
        "Stop the move and record ABORTED. Refused (exit 3) from CUTOVER_STARTED on, when the source "
        "tables may already be renamed. With no daemon running, records ABORTED in the checkpoint.",
    )
    cleanup = add(
        "cleanup",
        _cmd_cleanup,
        "after DONE or ROLLED_BACK: drop the checkpoint rows; --drop-source drops the renamed source tables",
        "After the move is DONE (or ROLLED_BACK), drop its rows from the target's checkpoint table "
        "(<state_database>._tablemover_checkpoint; the table itself when no other move uses it), and a "
        "rollback window's checkpoint rows on the source. The renamed source tables "
        "(renamed_table_format, by default _<table>_moved) are kept unless --drop-source is given "
        "(asks to confirm on a terminal; pass --yes otherwise; refused "
        "after a rollback, when the source tables are live again). --drop-source also works after an "
        "earlier plain cleanup. A rollback's target tables (_<table>_rolledback) are always kept.",
    )
    cleanup.add_argument("--drop-source", action="store_true", help="also drop the renamed source tables")
    cleanup.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    discard = add(
        "discard",
        _cmd_discard,
        "throw an unfinished move away (before the cutover), to start over",
        f"Drop the target tables this move created (tables that existed before the move are emptied) "
        f"and delete its rows from the target's checkpoint table (<state_database>.{cpstore.TABLE}), "
        "so that `tablemover run` starts the move from scratch. For a move that is PREPARED, COPYING, "
        "ABORTED or FAILED (or "
        "CUTOVER_STARTED while the source still has all its original tables). Refused while a daemon "
        "runs the move and from RENAMED on. Without --yes it only prints what it would drop.",
    )
    discard.add_argument("--yes", action="store_true", help="really drop; without it, only print the plan")
    status = add(
        "status",
        _cmd_status,
        "show the move's state and progress",
        "Show state, per-table progress and applied GTID: from the running daemon over its control "
        "socket, or from the checkpoint table on the target when no daemon runs ('source' says which).",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add(
        "cutover",
        _socket_command("cutover"),
        "release a postponed cutover (postpone_cutover = true)",
        "Tell the running daemon, over its control socket, that the cutover may start. It still waits "
        "until the copy is complete, the apply lag is under a second and postpone_flag_file is absent.",
    )
    rollback = add(
        "rollback",
        _cmd_rollback,
        "during the rollback window: move back to the source",
        "While the rollback window is open (rollback_window_s > 0, after the success hook): run "
        "on-before-rollback (non-zero declines), rename the target tables away "
        "(rolledback_table_format) in one RENAME, apply the target's last writes to the renamed source "
        "tables, give the source tables their names back in one RENAME, run on-rollback. Waits until "
        "the move is ROLLED_BACK (exit 0); exit 3 when declined or the window closed first, exit 1 "
        "when the daemon stopped midway (`run` resumes the rollback).",
    )
    rollback.add_argument("--no-wait", action="store_true", help="return once the daemon took the request")
    rollback.add_argument(
        "--timeout", type=float, default=3600.0, metavar="S", help="give up waiting after S seconds (exit 1)"
    )
    verify = add(
        "verify",
        _cmd_verify,
        "compare source and target tables with chunked checksums",
        "Compare every moved table chunk by chunk (row count and checksum over all columns) between "
        "the source (the renamed tables after cutover) and the target. Exit 0 only when equal; "
        "otherwise the differing key ranges and keys are listed. Run it while writes are stopped or "
        "after cutover: during COPYING live writes show up as differences.",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--rechecks",
        type=int,
        default=2,
        metavar="N",
        help="look at a differing chunk again N times, 0.5 s apart, before reporting it (changes in flight)",
    )
    demo = sub.add_parser(
        "demo",
        help="run a complete move between two throwaway local MariaDB servers",
        description=(
            "Start a source and a target mariadbd under a temp dir, seed three tables, keep writing "
            "to them, run a move, SIGKILL it once mid-copy and restart it, cut over, verify, print a "
            "summary, and remove the servers. Needs mariadbd (Debian: mariadb-server)."
        ),
    )
    demo.set_defaults(func=_cmd_demo)
    demo.add_argument("--rows", type=int, default=200_000, help="rows to seed over the three tables")
    demo.add_argument("--keep", action="store_true", help="leave the servers running for a look around")
    demo.add_argument(
        "--rollback",
        action="store_true",
        help="keep a rollback window open after the cutover, write to the target, then roll back",
    )
    demo.add_argument(
        "--replica",
        action="store_true",
        help="also start a GTID replica of the source and read the move's rows and binlog there "
        "([replica]); the RENAME stays on the source",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tablemover`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    log.setup(args.log_level, None if args.log_format == "auto" else args.log_format == "json")
    try:
        return int(args.func(args))
    except TablemoverError as exc:
        print(f"tablemover: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tablemover: interrupted", file=sys.stderr)
        return 1
    except MySQLError as exc:
        if error_code(exc) not in ACCESS_DENIED:
            log.logger.log(logging.ERROR, "unexpected error (a bug: please report it)", exc_info=True)
            return 1
        # A grant missing for this command (preflight checks only what `run` needs up front, and a
        # grant can be revoked later): bad input, which a restart would not fix.
        print(
            f"tablemover: a server refused a statement for lack of a privilege ({exc.args[-1]}). "
            "`tablemover check -c FILE` prints the grants the move user needs; grant them and run "
            "the command again (a move resumes from its checkpoint).",
            file=sys.stderr,
        )
        return 2
    except Exception:
        log.logger.log(logging.ERROR, "unexpected error (a bug: please report it)", exc_info=True)
        return 1
