"""The rollback window (WINDOW_OPEN): after the success hook, every change the application makes to
the moved tables on the target streams back into the source's renamed tables, so that a rollback
returns to a source that lost nothing.

It is the forward pipeline run the other way (:func:`reverse_feed`): the *target's* binlog, from the
position read at the drain (before the success hook told the application to write to the target,
so no application write is before it and none of the move's own writes is after it), through the
same screening and the same ordered writer, into ``database._t_moved`` on the source. The reverse
feed's checkpoint lives on the source, in the same transaction as the rows it describes; the
move's state stays on the target with the rest of its checkpoint.

The window closes when ``rollback_window_s`` has passed (DONE), or when the reverse feed cannot go
on (the target's schema changed, its binlog purged, an unreproducible event): then it closes
forward, loudly, never half-way. A rollback (``rollback.py``) is what else can end it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import anyio

from tablemover import checkpoint as cpstore
from tablemover.checkpoint import Checkpoint, TableProgress
from tablemover.config import Config
from tablemover.controls import Controls
from tablemover.flavor import Flavor
from tablemover.log import event
from tablemover.machine import State
from tablemover.pipeline import Feed
from tablemover.stream import StreamSettings

POLL_S = 1.0


def rollback_comment(move_name: str, nonce: str) -> str:
    """The comment tagging the rollback's RENAME on the target (the reverse feed skips it by this)."""
    return f"tablemover rollback move={move_name} nonce={nonce}"


def reverse_feed(config: Config, target_flavor: Flavor, state_database: str) -> Feed:
    """Target binlog -> the source's renamed tables, no copy; the feed's checkpoint in ``state_database``."""
    move = config.move
    settings = StreamSettings(
        server=config.target,
        flavor=target_flavor,
        server_id=move.reverse_server_id,
        database=move.effective_target_database,
        own_rename_tag=rollback_comment(move.name, nonce=""),
        report_host=f"{move.replica_host_tag}:reverse",
        role="target",  # the reverse stream reads the target's binlog, with [target]'s TLS settings
        fold_names=move.target_folds_names,
    )
    tables = {t: move.renamed(t) for t in move.tables}
    return Feed(settings, move.database, tables, forward=False, state_database=state_database)


@dataclass(frozen=True)
class Window:
    """What every checkpoint row of the window carries in its detail, so a restart keeps both."""

    reverse_from: str  # the target position read at the drain
    closes_at: float  # wall clock (time.time()): a restart does not lengthen the window
    # The reverse feed's name in the source's checkpoint table: new for every window, so rows an
    # earlier move of the same name left there can never be taken for this one's.
    feed_name: str

    @classmethod
    def open(cls, move_name: str, reverse_from: str, length_s: float) -> Window:
        """A window opening now."""
        return cls(reverse_from, time.time() + length_s, f"{move_name}~rev{secrets.token_hex(6)}")

    def detail(self, **extra: Any) -> dict[str, Any]:
        """A transition's detail: the window's facts plus ``extra``."""
        window = {"reverse_from": self.reverse_from, "closes_at": self.closes_at, "feed": self.feed_name}
        return {**window, **extra}

    @classmethod
    def from_checkpoint(cls, cp: Checkpoint) -> Window | None:
        """The window a window state's checkpoint row describes (None when it does not)."""
        detail = cp.detail
        reverse_from, closes_at, feed = (
            detail.get("reverse_from"),
            detail.get("closes_at"),
            detail.get("feed"),
        )
        if (
            not isinstance(reverse_from, str)
            or not isinstance(closes_at, int | float)
            or not isinstance(feed, str)
        ):
            return None
        return cls(reverse_from, float(closes_at), feed)

    @property
    def remaining_s(self) -> float:
        """Seconds until the window closes (negative once it has)."""
        return self.closes_at - time.time()


async def feed_state_database(config: Config, source: Any, window: Window) -> str:
    """The schema of the window's feed checkpoint on the source (see :func:`tablemover.checkpoint.locate`).

    The move's state schema, or the source schema for a window an earlier version opened there.
    """
    move = config.move
    return await cpstore.locate(source, move.state_database, move.database, window.feed_name)


async def reverse_checkpoint(config: Config, source: Any, window: Window, database: str) -> Checkpoint:
    """The reverse feed's checkpoint on the source, in ``database``: created when the window opens,
    read on resume.

    ``source`` is the reverse writer's connection (not autocommit); the row is committed here.
    """
    await cpstore.ensure_table(source, database)
    cp = await cpstore.latest(source, database, window.feed_name)
    if cp is None:
        cp = Checkpoint(
            move_name=window.feed_name,
            state=State.WINDOW_OPEN,
            kind=cpstore.KIND_TRANSITION,
            applied_gtid=window.reverse_from,
            progress={t: TableProgress(done=True) for t in config.move.tables},
            detail=window.detail(),
        )
        cp = await cpstore.write(source, database, cp)
        event("reverse feed checkpoint created on the source", table=f"{database}.{cpstore.TABLE}")
    await source.commit()
    return cp


async def hold_open(window: Window, controls: Controls) -> bool:
    """Wait in the window: True when a rollback is asked for, False once the window elapsed."""
    while not controls.rollback_requested:
        remaining = window.remaining_s
        if remaining <= 0:
            return False
        with anyio.move_on_after(min(remaining, POLL_S)):
            await controls.rollback_asked.wait()
    return True
