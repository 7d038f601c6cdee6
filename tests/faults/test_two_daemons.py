"""One daemon per move, any number of moves per source.

A second `run` of a running move exits 2 within seconds naming the owner, and changes nothing: the
first daemon's control socket still answers and it finishes. Two different moves from one source
run side by side, each with its own binlog server_id, and both finish equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time

import pytest
from faultkit import (
    ReconnectingWriteLoad,
    finish,
    log_text,
    renamed,
    seed,
    states,
    status,
    wait_logged,
    wait_until,
)

from conftest import MoveEnv
from support import assert_tables_equal, transitions
from tablemover.config import load_config
from tablemover.db import close
from tablemover.errors import MoveOwned
from tablemover.ownership import MoveLock, is_owned


def test_second_daemon_of_a_move_is_refused_and_the_first_finishes(fault_move: MoveEnv) -> None:
    move = fault_move
    seed(move, rows=5000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    load = ReconnectingWriteLoad(move.source, move.database, ["a", "b"], key_space=5000, pause_s=0.005)
    load.start()
    try:
        first = move.popen("run", "-c", str(cfg))
        wait_logged(move, "copy complete and caught up")
        before = move.tgt(f"SELECT COUNT(*) FROM {move.checkpoint_table} WHERE kind = 'transition'")
        started = time.monotonic()
        second = move.cli("run", "-c", str(cfg), timeout=60)
        took = time.monotonic() - started
        assert second.returncode == 2, second.stdout + second.stderr
        assert took < 10, f"the refusal took {took:.1f} s"
        # It names the owner: the first daemon's host and pid, and since when.
        assert "already run by another daemon" in second.stderr, second.stderr
        assert f"{socket.gethostname()} pid={first.pid}" in second.stderr, second.stderr
        assert "since" in second.stderr, second.stderr
        assert "nothing was changed" in second.stderr
        assert move.tgt(f"SELECT COUNT(*) FROM {move.checkpoint_table} WHERE kind = 'transition'") == before
        # The first daemon still owns its control socket and answers on it.
        assert os.path.exists(move.workdir / "t.sock")
        shown = status(move, cfg)
        assert shown["source"] == "daemon" and shown["state"] == "COPYING", shown
        assert first.poll() is None
        released = move.cli("cutover", "-c", str(cfg))
        assert released.returncode == 0, released.stdout + released.stderr
        finish(first, move)
    finally:
        load.stop()
    assert transitions(move)[-1] == "DONE"
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


def test_two_daemons_started_together_on_a_new_move(fault_move: MoveEnv) -> None:
    # The race at the very start of a move: one takes the lock, the other is refused before it
    # has read anything. The winner cannot finish before it is released, so the loser always
    # meets a running daemon, however late it starts.
    move = fault_move
    seed(move, rows=3000)
    cfg = move.config(["a", "b"], move={"postpone_cutover": True})
    procs = [move.popen("run", "-c", str(cfg)) for _ in range(2)]
    wait_until("one daemon refused", lambda: any(p.poll() is not None for p in procs), 60)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    assert loser.returncode == 2, log_text(move)[-4000:]
    assert f"pid={winner.pid}" in log_text(move) or "owner since" not in log_text(move)
    assert "already run by another daemon" in log_text(move)
    wait_logged(move, "cutover postponed")
    released = move.cli("cutover", "-c", str(cfg))
    assert released.returncode == 0, released.stdout + released.stderr
    finish(winner, move)
    assert transitions(move) == [
        "PREPARED",
        "COPYING",
        "CUTOVER_STARTED",
        "RENAMED",
        "DRAINED",
        "HOOK_FIRED",
        "DONE",
    ]
    assert_tables_equal(move.source, move.database, move.target, move.target_database, renamed())


@pytest.mark.slow
def test_two_moves_from_one_source_at_once(fault_move: MoveEnv) -> None:
    # Two moves of one source database into one target database: a and b by move "t", c and d by
    # move "u". They share the source binlog and the target's checkpoint table, nothing else.
    one = fault_move
    two = dataclasses.replace(one, name="u")
    seed(one, ("a", "b", "c", "d"), rows=15_000)
    cfg_one = one.workdir / "one.toml"
    cfg_two = one.workdir / "two.toml"
    slow = {"chunk_size": 1000, "adaptive_chunk_size": False, "postpone_cutover": True}
    cfg_one.write_text(one.config_text(["a", "b"], move=slow))
    cfg_two.write_text(two.config_text(["c", "d"], move=slow))
    load = ReconnectingWriteLoad(
        one.source, one.database, ["a", "b", "c", "d"], key_space=15_000, pause_s=0.002
    )
    load.start()
    try:
        delays = {"TABLEMOVER_DELAYS": "copy.after_read:0.02"}
        first = one.popen("run", "-c", str(cfg_one), env=delays)
        second = one.popen("run", "-c", str(cfg_two), env=delays)
        # Both copy at the same time, then both wait caught up for the cutover.
        wait_until(
            "both moves caught up", lambda: log_text(one).count("copy complete and caught up") >= 2, 90
        )
        hosts = one.source.execute("SHOW SLAVE HOSTS")
        ours = {int(str(r[0])) for r in hosts if str(r[1]).startswith("tablemover:")}
        assert len(ours) == 2, f"each move's binlog client needs its own server_id: {hosts}"
        for cfg in (cfg_one, cfg_two):
            released = one.cli("cutover", "-c", str(cfg))
            assert released.returncode == 0, released.stdout + released.stderr
        finish(first, one)
        finish(second, one)
    finally:
        load.stop()
    assert states(one)[-1] == "DONE" and states(two)[-1] == "DONE", (states(one), states(two))
    tables = ("a", "b", "c", "d")
    assert_tables_equal(one.source, one.database, one.target, one.target_database, renamed(tables))
    done = [json.loads(line) for line in log_text(one).splitlines() if "move finished in state DONE" in line]
    assert len(done) == 2, log_text(one)[-3000:]


async def test_a_daemon_takes_back_its_own_orphaned_lock_but_never_another_daemons(
    fault_move: MoveEnv,
) -> None:
    # After a network fault the target may keep the session of a daemon's old lock connection,
    # and the lock with it, for hours. The daemon that held it takes it back; nobody else does.
    move = fault_move
    seed(move, rows=100)
    cfg = move.config(["a"])
    assert move.cli("run", "--stop-before-cutover", "-c", str(cfg)).returncode == 0
    config = load_config(str(cfg))
    ours = MoveLock(config)
    await ours.acquire()
    orphan, orphan_id = ours.conn, ours.connection_id
    ours.conn = None  # this process gave the connection up; the server still holds its lock
    try:
        other = MoveLock(config)
        with pytest.raises(MoveOwned, match=f"pid={os.getpid()}"):
            await other.acquire()
        assert await is_owned(config)
        await ours.acquire()
        assert ours.held and ours.connection_id != orphan_id
        assert str(orphan_id) not in str(
            move.target.execute("SELECT GROUP_CONCAT(ID) FROM information_schema.PROCESSLIST")
        )
        assert await ours.still_held()
    finally:
        await ours.release()
        await close(orphan)
    assert not await is_owned(config)
