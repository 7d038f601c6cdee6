"""The lock fences the writer: two daemons never write the target at once.

The move lock lives on a connection of its own; the writer writes on another. When only the lock's
connection goes (a proxy, a half-open socket, a KILL of that one connection), a second daemon can
take the lock while the first one's writer still runs. The keeper that would notice is blinded here
(``TABLEMOVER_DELAYS=lock.keep``: a half-open connection's check does not come back for seconds),
so what stops the first daemon is the writer's own proof, inside each target transaction, that the
lock is still its daemon's (and the checkpoint row's seq, a compare-and-set).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import (
    ReconnectingWriteLoad,
    daemon_connections,
    kill_connection,
    renamed,
    seed,
    wait_until,
)

from conftest import MoveEnv
from support import assert_tables_equal, transitions
from tablemover.config import load_config
from tablemover.db import close, connect
from tablemover.errors import MoveTakenOver
from tablemover.ownership import LockLost, MoveLock, lock_name
from tablemover.retry import is_transient

BLIND_KEEPER = {"TABLEMOVER_DELAYS": "lock.keep:3600"}


def spawn(move: MoveEnv, log: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``tablemover ARGS`` in the background with a log file of its own (two daemons, two logs)."""
    out = open(move.workdir / log, "a")  # noqa: SIM115 - owned by the child process
    proc = subprocess.Popen(
        [sys.executable, "-m", "tablemover", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **move.extra_env, **env},
    )
    move.procs.append(proc)  # the fixture kills what a failed test left running
    return proc


def text(move: MoveEnv, log: str) -> str:
    path: Path = move.workdir / log
    return path.read_text(errors="replace") if path.exists() else ""


def wait_text(move: MoveEnv, log: str, what: str, timeout: float = 120) -> None:
    """Wait until ``what`` is in the daemon log ``log``; fail with its tail."""
    try:
        wait_until(f"{what!r} in {log}", lambda: what in text(move, log), timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{text(move, log)[-4000:]}") from None


def lock_holder(move: MoveEnv) -> int:
    """The connection id holding the move's lock on the target (0 when free)."""
    name = lock_name(move.target_database, move.name)
    holder = move.target.execute(f"SELECT IS_USED_LOCK('{name}')")[0][0]
    return int(str(holder)) if holder is not None else 0


def lock_free(move: MoveEnv) -> bool:
    """Whether the move's lock is free (a KILL returns before the killed session lets it go)."""
    name = lock_name(move.target_database, move.name)
    return bool(move.target.execute(f"SELECT IS_USED_LOCK('{name}') IS NULL")[0][0])


def rows_after(move: MoveEnv, seq: int) -> list[tuple[int, str, str]]:
    """(seq, writer, kind) of the move's checkpoint rows past ``seq``, in seq order."""
    found = move.tgt(
        f"SELECT seq, writer, kind FROM {move.checkpoint_table} WHERE move_name = '{move.name}' "
        f"AND seq > {seq} ORDER BY seq"
    )
    return [(int(str(r[0])), str(r[1]), str(r[2])) for r in found]


def test_a_daemon_whose_lock_connection_was_killed_stops_when_another_takes_the_move(
    fault_move: MoveEnv,
) -> None:
    move = fault_move
    seed(move, rows=5000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.002)
    load.start()
    first = spawn(move, "a.log", "run", "-c", str(cfg), env=BLIND_KEEPER)
    try:
        wait_text(move, "a.log", "cutover postponed")
        assert first.poll() is None, text(move, "a.log")[-3000:]
        # Only A's lock connection goes; its writer's connection stays.
        # The lock's connection is the one the server names as the lock's holder (one of A's);
        # the writer is told apart by its statements (it proves the lock before each COMMIT).
        holder = wait_until("A's lock connection", lambda: lock_holder(move))
        own = daemon_connections(move.target, "target", first.pid)
        locks = [c for c in own if c.id == holder]
        assert locks, f"the lock's holder {holder} is not one of A's connections: {own}"
        writers = [c for c in own if c.role == "writer" and c.id != holder]
        assert writers, "A's writer connection is there"
        # Writes pause while B starts, so that B takes the free lock before A's writer next commits
        # (A would otherwise find the lock free, take it back and refuse B: the plain refusal).
        load.stop()
        # ... and A applies the last of them before the kill: a marker row on the target says
        # its writer has nothing left to commit.
        move.src("UPDATE a SET v = 'marker' WHERE id = 1")
        wait_until("A applied the marker", lambda: move.tgt("SELECT v FROM a WHERE id = 1") == [("marker",)])
        assert kill_connection(move.target, locks[0].id)
        wait_until("A's lock freed", lambda: lock_free(move))
        before = int(
            str(move.tgt(f"SELECT MAX(seq) FROM {move.checkpoint_table} WHERE move_name='{move.name}'")[0][0])
        )
        # B is the same move run from elsewhere (another host, say): its own control socket.
        cfg_b = move.workdir / "b.toml"
        cfg_b.write_text(
            move.config_text(
                ["a", "b"],
                move={"postpone_cutover": True},
                control={"socket": str(move.workdir / "b-{name}.sock")},
            )
        )
        second = spawn(move, "b.log", "run", "-c", str(cfg_b), env=BLIND_KEEPER)
        wait_text(move, "b.log", "cutover postponed")
        assert first.poll() is None, (
            "A stopped before it had anything to commit:\n" + text(move, "a.log")[-3000:]
        )
        assert {c.id for c in writers} <= {
            c.id for c in daemon_connections(move.target, "target", first.pid)
        }, "A's writer connection survived the KILL of its lock connection"
        # Writes again: both daemons' streams see them, both writers try to commit them.
        load = ReconnectingWriteLoad(
            move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.002, seed=2
        )
        load.start()
        code = first.wait(timeout=120)
        a_log = text(move, "a.log")
        assert code == 2, f"A exited {code}:\n{a_log[-3000:]}"
        assert "was taken over" in a_log or "after this daemon read the move's state" in a_log, a_log[-3000:]
        assert "rolled back its open transaction" in a_log
        assert second.poll() is None, text(move, "b.log")[-3000:]
        # B goes on and finishes the move: released, cut over, drained, DONE.
        released = move.cli("cutover", "-c", str(cfg_b))
        assert released.returncode == 0, released.stdout + released.stderr
        assert second.wait(timeout=180) == 0, text(move, "b.log")[-5000:]
        # Every checkpoint row since B started is B's: A committed none after the takeover.
        after = rows_after(move, before)
        assert [kind for _seq, _writer, kind in after].count("transition") >= 5, after
        assert all(f"pid={second.pid} " in writer for _seq, writer, _kind in after), after
    finally:
        load.stop()
        for proc in (first,):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
    assert not load.errors or all("1146" in e for e in load.errors), load.errors[:3]  # renamed away
    assert transitions(move)[-1] == "DONE"
    done = [
        json.loads(line) for line in text(move, "b.log").splitlines() if "move finished in state DONE" in line
    ]
    assert len(done) == 1
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


async def test_prove_tells_a_dropped_lock_from_a_taken_one(fault_move: MoveEnv) -> None:
    # What the writer's check answers on its own connection: ours; free (our lock connection
    # dropped: LockLost, transient, the retry loop takes the lock again); another connection's
    # (MoveTakenOver, exit 2).
    move = fault_move
    config = load_config(str(move.config(["a"])))
    ours, other = MoveLock(config), MoveLock(config)
    writer = await connect(config.target, "target", autocommit=False)
    try:
        await ours.acquire(record=False)
        await ours.prove(writer)
        assert kill_connection(move.target, ours.connection_id)
        # KILL returns before the killed session has let its locks go.
        wait_until("the lock freed", lambda: lock_free(move))
        with pytest.raises(LockLost) as lost:
            await ours.prove(writer)
        assert is_transient(lost.value)
        await other.acquire(record=False)
        with pytest.raises(MoveTakenOver, match=f"held by target connection {other.connection_id}") as taken:
            await ours.prove(writer)
        assert taken.value.exit_code == 2 and not is_transient(taken.value)
        await other.prove(writer)
    finally:
        await other.release()
        ours.conn = None  # killed above
        await close(writer)
