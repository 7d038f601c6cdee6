"""One move, one daemon: a named server lock on the target, held for the daemon's whole life.

Design. The daemon takes ``GET_LOCK(<name>, 0)`` on a dedicated target connection right after
preflight, before it changes anything, and keeps that connection open until it exits. The name is
derived from the target schema and the move name, so two daemons of one move collide wherever they
run, and two different moves never do. Named locks belong to a connection: when the process dies
(SIGKILL included), or its host or the network goes away, the server ends the connection and the
lock frees itself; there is no stale lock file or row to clean up by hand.

Failure cases and what happens:

* A second ``run`` of the same move (this host or another): ``GET_LOCK`` returns 0 at once; it
  exits 2 naming the owner (host, pid, since when, from the owner row the holder wrote) and
  changes nothing.
* The owner's lock connection drops (network, ``KILL``, target restart): the keeper notices within
  :data:`KEEP_EVERY_S` and raises :class:`LockLost`, a transient error; the daemon's retry loop
  takes the lock again before it touches anything. If another daemon took it in between, that
  one owns the move now and this one exits 2.
* A half-dead owner that cannot reach the target keeps no lock (the server dropped it), but it
  cannot write to the target either: every write goes through a target connection.
* The lock's connection drops but the writer's survives (a proxy, a half-open socket, a ``KILL``
  of the lock connection only), and a second daemon takes the lock before the keeper notices:
  the writer itself is fenced. Every target transaction that writes a checkpoint row proves, on
  its own connection and right before its COMMIT, that the lock is held by this daemon's lock
  connection (:meth:`MoveLock.prove`, one ``IS_USED_LOCK`` round trip); and its checkpoint row is
  a compare-and-set (the unique ``(move_name, seq)`` of :mod:`tablemover.checkpoint`), which
  closes the moment between that check and the COMMIT: of two daemons that both continue from
  row N, only one commits row N+1. The other rolls back its transaction and stops,
  :class:`MoveTakenOver` (exit 2). A lock that is merely free (our lock connection dropped and
  nobody took it) is :class:`LockLost`: the transaction is rolled back and the retry loop takes
  the lock again before it writes.

The owner row is a checkpoint-table row of kind ``owner`` (not a state: readers of the move's
state skip it) carrying the lock connection's id, so a reader can tell the live owner's row from a
dead one's.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import anyio
from asyncmy.errors import MySQLError

from tablemover import checkpoint as cpstore
from tablemover import faults
from tablemover.config import Config
from tablemover.db import close, connect, query, query_one
from tablemover.errors import MoveOwned, MoveTakenOver, TablemoverError
from tablemover.log import event

KEEP_EVERY_S = 2.0
ANSWER_WITHIN_S = 10.0  # for the lock's own queries: a half-open connection never answers


class LockLost(TablemoverError):
    """The lock connection dropped; the retry loop re-acquires the lock (transient)."""

    exit_code = 1
    transient = True


def lock_name(target_database: str, move_name: str) -> str:
    """The server lock's name (at most 64 characters, as MariaDB and MySQL allow)."""
    digest = hashlib.sha1(f"{target_database}\0{move_name}".encode()).hexdigest()[:32]
    return f"tablemover:{move_name[:20]}:{digest}"


class MoveLock:
    """The held lock and its connection."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = lock_name(config.move.effective_target_database, config.move.name)
        self.conn: Any = None
        self.connection_id = 0

    async def acquire(self, *, record: bool = True, announce: bool = True) -> None:
        """Take the lock or raise :class:`MoveOwned` naming the daemon that has it.

        ``record`` writes the owner row at once; the daemon's first acquire leaves that to after
        preflight (:meth:`record_owner`), so that a refused preflight has changed nothing.
        ``announce`` logs it (the offline commands take the lock quietly).
        """
        self.conn = await connect(self.config.target, "target", connection="lock")
        try:
            row = await query_one(self.conn, "SELECT GET_LOCK(%s, 0), CONNECTION_ID()", (self.name,))
            assert row is not None
            if row[0] != 1 and await self._reclaim_orphan():
                row = await query_one(self.conn, "SELECT GET_LOCK(%s, 5), CONNECTION_ID()", (self.name,))
                assert row is not None
            if row[0] != 1:
                owner = await describe_owner(self.conn, self.config, self.name)
                raise MoveOwned(owned_message(self.config, owner))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await close(self.conn)
            self.conn = None
            raise
        self.connection_id = int(row[1])
        if record:
            await self.record_owner()
        event(
            "move lock taken",
            logging.INFO if announce else logging.DEBUG,
            lock=self.name,
            connection_id=self.connection_id,
        )

    async def _reclaim_orphan(self) -> bool:
        """Kill our own previous lock connection if the server still holds the lock for it.

        After a network fault the server may keep the session of our old lock connection (and the
        lock) until wait_timeout, hours later, although this process gave it up. It is ours when
        it is the connection id we had and the owner row of that id names this process; any
        other holder is another daemon and is left alone.
        """
        if not self.connection_id:
            return False
        row = await query_one(self.conn, "SELECT IS_USED_LOCK(%s)", (self.name,))
        holder = int(row[0]) if row and row[0] is not None else 0
        if holder != self.connection_id:
            return False
        db = await cpstore.locate_move(self.conn, self.config.move)
        owner = await cpstore.latest_owner(self.conn, db, self.config.move.name)
        if (
            owner is None
            or owner.detail.get("connection_id") != holder
            or owner.writer != cpstore.writer_identity()
        ):
            return False
        event("taking the move lock back from this daemon's own orphaned connection", connection_id=holder)
        try:
            await query(self.conn, f"KILL CONNECTION {holder}")
        except MySQLError as exc:  # gone by itself meanwhile (1094), or not ours to kill after all
            event("could not end the orphaned lock connection", logging.DEBUG, error=str(exc))
        return True

    async def record_owner(self) -> None:
        """Write the owner row (when the checkpoint table exists yet) for a refused daemon to read."""
        if self.conn is None:
            return
        db = await cpstore.locate_move(self.conn, self.config.move)
        if not await cpstore.table_present(self.conn, db):
            return
        # A move started by an earlier version: its table gets the seq column now, under the lock
        # and before this daemon writes anything.
        if await cpstore.upgrade_table(self.conn, db):
            event("checkpoint table upgraded: rows are now ordered by their seq column", table=cpstore.TABLE)
        latest = await cpstore.latest(self.conn, db, self.config.move.name)
        if latest is None:
            return
        await cpstore.write(
            self.conn,
            db,
            latest.evolve(kind=cpstore.KIND_OWNER, detail={"connection_id": self.connection_id}),
        )

    async def keep(self) -> None:
        """Check the lock is still ours every few seconds; raise :class:`LockLost` when it is not."""
        while True:
            await anyio.sleep(KEEP_EVERY_S)
            # Tests blind the keeper (a half-open lock connection whose check never returns) to
            # show that the writer's own fence (prove) stops a second writer without it.
            await faults.delay("lock.keep")
            if not await self.still_held():
                raise LockLost(
                    "the move lock's connection to the target was lost, or the lock is no longer ours"
                )

    async def still_held(self) -> bool:
        """Ask the server whether the lock is still held by our lock connection (bounded wait).

        False when the connection is broken (which frees the lock on the server), or when the
        question goes unanswered: a half-open connection after a network fault never answers,
        and a daemon that cannot tell whether it owns the move must not go on as if it did.
        """
        if self.conn is None:
            return False
        try:
            with anyio.fail_after(ANSWER_WITHIN_S):
                row = await query_one(self.conn, "SELECT IS_USED_LOCK(%s)", (self.name,))
        except (MySQLError, OSError, EOFError, TimeoutError):
            return False
        return row is not None and row[0] is not None and int(row[0]) == self.connection_id

    async def prove(self, conn: Any) -> None:
        """Inside a target transaction on ``conn``, before its COMMIT: raise unless we hold the lock.

        Asked on the writing connection, not the lock's: whatever happened to the lock connection,
        the server that is about to commit says who holds the lock now. Held by another
        connection: :class:`MoveTakenOver` (another daemon, or an offline command, owns the move;
        exit 2). Free: :class:`LockLost` (our lock connection dropped; the retry loop takes it
        again, or is refused if someone else did meanwhile). The caller rolls back.
        """
        row = await query_one(conn, "SELECT IS_USED_LOCK(%s)", (self.name,))
        holder = int(row[0]) if row is not None and row[0] is not None else 0
        if self.connection_id and holder == self.connection_id:
            return
        if not holder:
            raise LockLost(
                "the move lock is free on the target: this daemon's lock connection "
                f"({self.connection_id}) dropped; the open transaction was rolled back"
            )
        raise MoveTakenOver(
            f"move {self.config.move.name!r} was taken over: its lock is held by target connection "
            f"{holder}, no longer by this daemon's lock connection ({self.connection_id}), which "
            "dropped. This daemon rolled back its open transaction (nothing of it was committed) and "
            "stopped so that two daemons never write the target at once. Only one daemon may run a "
            "move; see `tablemover status -c FILE` for the one that does."
        )

    @property
    def held(self) -> bool:
        """Whether this daemon believes it holds the lock (its connection is open)."""
        return self.conn is not None

    async def drop(self) -> None:
        """Forget a lock whose connection may be broken; the next attempt acquires it again."""
        await self.release()

    async def keep_or_drop(self) -> None:
        """After a failed attempt: keep a lock that is still ours, drop a broken one.

        Keeping it means no other daemon, nor an offline `abort` or `discard`, can take the move
        between two attempts of this one.
        """
        with anyio.CancelScope(shield=True):
            if not await self.still_held():
                await self.drop()

    async def release(self) -> None:
        """Give the lock back (closing the connection would too)."""
        if self.conn is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(ANSWER_WITHIN_S):
                    await query(self.conn, "SELECT RELEASE_LOCK(%s)", (self.name,))
            except (MySQLError, OSError, EOFError, TimeoutError):
                # A gone connection has freed the lock as well; a half-open one is closed below,
                # and a server that kept its session lets _reclaim_orphan take the lock back.
                event("move lock release failed; closing its connection frees it", logging.DEBUG)
            await close(self.conn)
        self.conn = None


async def describe_owner(conn: Any, config: Config, name: str) -> str:
    """Who holds the move's lock: the owner row of its connection, else what the processlist says."""
    row = await query_one(conn, "SELECT IS_USED_LOCK(%s)", (name,))
    holder = int(row[0]) if row and row[0] is not None else 0
    if not holder:
        return "it released the lock just now"
    db = await cpstore.locate_move(conn, config.move)
    owner = await cpstore.latest_owner(conn, db, config.move.name)
    if owner is not None and owner.detail.get("connection_id") == holder:
        return f"{owner.writer}, owner since {owner.created_at}"
    procs = await query(
        conn, "SELECT HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = %s", (holder,)
    )
    where = f" from {procs[0][0]}" if procs else ""
    return f"target connection {holder}{where}"


def owned_message(config: Config, owner: str) -> str:
    """The refusal of a second daemon, naming the one that runs the move."""
    return (
        f"move {config.move.name!r} is already run by another daemon ({owner}). Only one daemon may "
        "run a move; nothing was changed. Stop that daemon first (`systemctl stop "
        f"tablemover@{config.move.name}`, or `tablemover abort -c FILE`), or wait for it."
    )


async def is_owned(config: Config) -> str:
    """'' when no daemon owns the move, else a description of the owner (for offline commands)."""
    conn = await connect(config.target, "target")
    try:
        name = lock_name(config.move.effective_target_database, config.move.name)
        row = await query_one(conn, "SELECT IS_USED_LOCK(%s)", (name,))
        if row is None or row[0] is None:
            return ""
        return await describe_owner(conn, config, name)
    finally:
        await close(conn)
