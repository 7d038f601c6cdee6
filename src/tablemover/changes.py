"""The records that flow from the stream and the copier to the one ordered target writer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import anyio

from tablemover.keycodec import KeyValue

Row = tuple[Any, ...]  # values of a table's writable columns, in column order


class Op(enum.IntEnum):
    """What a binlog row change does."""

    INSERT = 1
    UPDATE = 2
    DELETE = 3


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row of a binlog row event for a moved table, decoded against our schema."""

    table: str
    op: Op
    before: Row | None  # DELETE and UPDATE
    after: Row | None  # INSERT and UPDATE


@dataclass(frozen=True, slots=True)
class Commit:
    """A source transaction ended here: its GTID may join the applied position once written."""

    gtid: str


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """What the stream thread hands over in one go: row changes and commit markers, in binlog order.

    A batch may end inside a source transaction (a very large one is sent in parts); the writer
    then keeps its target transaction open until the ``Commit`` arrives.
    """

    items: list[RowChange | Commit]
    events: int  # binlog events consumed to produce this batch, moved tables or not


@dataclass(slots=True)
class CopyChunk:
    """Rows read from the source under a shared lock; the copier waits on ``committed``.

    The source transaction holding the lock stays open until the writer has committed the chunk
    on the target (spec rule 3), which is what ``committed`` tells the copier.
    """

    table: str
    rows: list[Row]
    last_key: tuple[KeyValue, ...] | None
    done: bool  # this is the table's last chunk
    committed: anyio.Event = field(default_factory=anyio.Event)


WorkItem = StreamBatch | CopyChunk
