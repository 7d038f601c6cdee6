"""Hooks: executables in ``hooks_dir`` that tell the application side what the move is doing.

``on-success``, ``on-success-10-grants`` and ``gh-ost-on-success`` all answer the hook name
``success``; they run in name order and the first failure stops the rest. Each gets our facts and
gh-ost's names for the same facts, so gh-ost move-tables hook scripts run unchanged, and from the
daemon's own environment only what a script needs to run (``INHERITED``): never a setting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from tablemover import checkpoint as cpstore
from tablemover import faults
from tablemover.checkpoint import Checkpoint
from tablemover.config import Config
from tablemover.log import event
from tablemover.machine import MoveMachine

if TYPE_CHECKING:
    from tablemover.cutover import CutoverTimings
    from tablemover.status import Board

# Executables started per hook name in this process, for /metrics.
RUNS: Counter[str] = Counter()

HOOK_NAMES = (
    "startup",
    "row-copy-complete",
    "begin-postponed",
    "before-cutover",
    "success",
    "failure",
    "status",
    "before-rollback",
    "rollback",
)


@dataclass(frozen=True)
class HookResult:
    """How a hook name's executables ran; ``ok`` when all exited 0 (or there were none)."""

    ok: bool
    ran: tuple[str, ...]
    failed: str | None = None
    detail: str = ""


def find_hooks(hooks_dir: str, name: str) -> list[Path]:
    """Executables for ``name`` in name order: ``on-<name>[...]`` and ``gh-ost-on-<name>[...]``."""
    if not hooks_dir:
        return []
    directory = Path(hooks_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        base = path.name
        for prefix in (f"on-{name}", f"gh-ost-on-{name}"):
            rest = base[len(prefix) :] if base.startswith(prefix) else None
            # "on-success-10-grants" belongs to "success"; "on-success-hook" too; "on-successor" not.
            if rest is not None and (rest == "" or rest.startswith(("-", "_", "."))):
                if path.is_file() and os.access(path, os.X_OK):
                    found.append(path)
                break
    return sorted(found, key=lambda p: p.name)


def hook_environment(config: Config, state: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Our TABLEMOVER_* variables plus gh-ost's GH_OST_* names for the same facts."""
    move = config.move
    tables = ",".join(move.tables)
    renamed = ",".join(move.renamed(t) for t in move.tables)
    env = {
        "TABLEMOVER_MOVE_NAME": move.name,
        "TABLEMOVER_STATE": state,
        "TABLEMOVER_DATABASE": move.database,
        "TABLEMOVER_TARGET_DATABASE": move.effective_target_database,
        "TABLEMOVER_TABLES": tables,
        "TABLEMOVER_RENAMED_TABLES": renamed,
        "TABLEMOVER_SOURCE_HOST": config.source.host,
        "TABLEMOVER_SOURCE_PORT": str(config.source.port),
        "TABLEMOVER_TARGET_HOST": config.target.host,
        "TABLEMOVER_TARGET_PORT": str(config.target.port),
        "GH_OST_MOVE_TABLES": "true",
        "GH_OST_DRY_RUN": "false",
        "GH_OST_DATABASE_NAME": move.database,
        "GH_OST_TABLE_NAME": tables,
        "GH_OST_TABLES": tables,
        "GH_OST_OLD_TABLE_NAME": renamed,
        "GH_OST_TARGET_DATABASE_NAME": move.effective_target_database,
        "GH_OST_TARGET_TABLE_NAME": tables,
        "GH_OST_TARGET_HOST": config.target.host,
    }
    env.update(extra)
    aliases = {
        "TABLEMOVER_DRAIN_GTID": "GH_OST_DRAIN_GTID",
        "TABLEMOVER_ELAPSED_S": "GH_OST_ELAPSED_SECONDS",
        "TABLEMOVER_ROWS_COPIED": "GH_OST_COPIED_ROWS",
        "TABLEMOVER_PROGRESS": "GH_OST_PROGRESS",
        "TABLEMOVER_ETA_S": "GH_OST_ETA_SECONDS",
    }
    for ours, theirs in aliases.items():
        if ours in env:
            env[theirs] = env[ours]
    return env


# What a hook inherits from the daemon's own environment: what a script needs to run (PATH, locale,
# HOME, time zone, temp dir) and where it may write (systemd's per-unit directories). Nothing else:
# a setting given as TABLEMOVER_<SECTION>__<KEY> may be a password (the documented way for
# systemd drop-ins and containers), and whatever else the service manager or a container passed
# the daemon is not the hook's business. gh-ost hands its hooks everything; we do not.
INHERITED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "HOME",
        "TZ",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "STATE_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "INVOCATION_ID",
    }
)

# How much of a hook's output is kept (the tail: where a failing script says why). A hook printing
# without end must not grow the daemon's memory with it.
OUTPUT_TAIL_BYTES = 64 * 1024
_READ_BYTES = 16 * 1024


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the daemon's environment a hook gets (see ``INHERITED``)."""
    return {k: v for k, v in environ.items() if k in INHERITED or k.startswith("LC_")}


class _Tail:
    """The last ``limit`` bytes of a stream, read to its end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.ended = anyio.Event()

    async def read(self, stream: anyio.abc.ByteReceiveStream) -> None:
        try:
            while True:
                self.data += await stream.receive(_READ_BYTES)
                if len(self.data) > 2 * self.limit:
                    del self.data[: -self.limit]
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.ended.set()

    def text(self) -> str:
        return bytes(self.data[-self.limit :]).decode("utf-8", "replace")


def _kill_group(proc: anyio.abc.Process) -> None:
    """SIGKILL the hook and every process it started (they share its process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# After a hook exits, how long processes it left behind may keep its output open before they are
# killed with it (a hook is synchronous: what it starts is part of it).
_LEFTOVER_GRACE_S = 1.0


async def _run_one(path: Path, env: Mapping[str, str], timeout_s: float) -> tuple[int | None, str]:
    """Run one hook executable: (exit code, output tail); exit code None when it timed out.

    The hook leads a process group of its own, so a timeout kills what it started too (a
    ``sleep`` in a shell script, a backgrounded helper); its stdout and stderr are read as they
    come and only their tail is kept.
    """
    proc = await anyio.open_process(
        [str(path)], env=dict(env), stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    tail = _Tail(OUTPUT_TAIL_BYTES)
    code: int | None = None
    try:
        assert proc.stdout is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail.read, proc.stdout)
            with anyio.move_on_after(timeout_s):
                code = await proc.wait()
            if code is None:
                _kill_group(proc)
            else:
                with anyio.move_on_after(_LEFTOVER_GRACE_S):
                    await tail.ended.wait()
                if not tail.ended.is_set():
                    _kill_group(proc)  # children still hold its output: they go with it
            with anyio.move_on_after(_LEFTOVER_GRACE_S):
                await tail.ended.wait()
            # A process that left the group (setsid) may hold the pipe for ever: stop reading it.
            tg.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            _kill_group(proc)
            with anyio.CancelScope(shield=True):
                await proc.wait()
        await proc.aclose()
    return code, tail.text()


async def run_hooks(config: Config, name: str, state: str, extra: Mapping[str, str]) -> HookResult:
    """Run every executable of hook ``name``; their output (its tail) goes to the log."""
    paths = find_hooks(config.move.hooks_dir, name)
    if not paths:
        return HookResult(True, ())
    env = {**inherited_environment(os.environ), **hook_environment(config, state, extra)}
    timeout_s = config.move.hook_timeout_s
    ran: list[str] = []
    for path in paths:
        ran.append(path.name)
        RUNS[name] += 1
        try:
            code, output = await _run_one(path, env, timeout_s)
        except OSError as exc:
            event("hook could not start", hook=path.name, error=str(exc))
            return HookResult(False, tuple(ran), path.name, str(exc))
        output = output.strip()
        if code is None:
            event("hook timed out", hook=path.name, timeout_s=timeout_s, output=output[-4000:])
            return HookResult(False, tuple(ran), path.name, f"timed out after {timeout_s} s")
        event("hook ran", hook=path.name, exit_code=code, output=output[-4000:])
        if code != 0:
            return HookResult(False, tuple(ran), path.name, f"exit code {code}: {output[-500:]}")
    return HookResult(True, tuple(ran))


async def fire_until_ok(
    config: Config,
    hook: str,
    machine: MoveMachine,
    trigger: str,
    attempts_so_far: int,
    record_attempt: Callable[[int], Awaitable[None]],
    env: Callable[[], dict[str, str]],
) -> None:
    """Run ``hook`` until it exits 0 (at least once), then fire ``trigger``.

    T5 runs on-success this way (DRAINED -> HOOK_FIRED), and a rollback on-rollback
    (ROLLBACK_DRAINED -> ROLLED_BACK): the application must hear of the switch, so the state waits
    for it. ``record_attempt(n)`` commits the attempt number before the hook runs: a crash inside
    it re-runs it with a higher TABLEMOVER_HOOK_ATTEMPT, so the hook can tell and be idempotent.
    """
    delay = 1.0
    attempt = attempts_so_far
    state = machine.current.value
    while True:
        attempt += 1
        await record_attempt(attempt)
        faults.hit(f"hook.before_{hook}")
        result = await run_hooks(config, hook, state, {**env(), "TABLEMOVER_HOOK_ATTEMPT": str(attempt)})
        if result.ok:
            await machine.fire(trigger, hook_attempts=attempt)
            return
        event(
            f"on-{hook} hook failed; retrying (the state stays {state})",
            logging.WARNING,
            hook=result.failed,
            detail=result.detail,
            attempt=attempt,
            retry_in_s=delay,
        )
        await anyio.sleep(delay)
        delay = min(delay * 2, 60.0)


async def fire_success(
    config: Config,
    machine: MoveMachine,
    board: Board,
    timings: CutoverTimings,
    *,
    write: Callable[[Checkpoint], Awaitable[None]],
    position: Callable[[], Awaitable[str]],
    env: Callable[[], dict[str, str]],
) -> None:
    """DRAINED: run ``on-success`` until it exits 0 (HOOK_FIRED), each attempt recorded by ``write``.

    ``position()`` reads the target's position now; ``env()`` is the hooks' environment.
    """
    cp = board.committed.checkpoint
    assert cp is not None

    async def record_attempt(attempt: int) -> None:
        current = board.committed.checkpoint
        assert current is not None
        # The target's position before the application hears of the switch: where a rollback
        # window's reverse feed starts. Read once; a crash inside the hook keeps the first.
        reverse_from = current.detail.get("reverse_from") or await position()
        row = current.evolve(
            hook_attempts=attempt, kind=cpstore.KIND_PROGRESS, detail={"reverse_from": reverse_from}
        )
        await write(row)
        timings.report_outage(board)

    def success_env() -> dict[str, str]:
        return {**env(), "TABLEMOVER_DRAIN_GTID": cp.drain_gtid or ""}

    await fire_until_ok(
        config, "success", machine, "mark_hook_fired", cp.hook_attempts, record_attempt, success_env
    )
