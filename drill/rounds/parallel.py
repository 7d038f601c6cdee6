"""Parallel-copy rounds: a forward round whose move copies with four streams (``copy_threads = 4``),
SIGKILLed at the n-th chunk commit of a stream (after the commit, or with the chunk and its range
row written but not committed), then on the restart inside the checksum that trails the copy (its
n-th compared chunk) or at a cutover point. Every fourth round (3, 7,
...) unless it is a window round.

What it proves beyond a forward round: each stream's chunk and its range's progress row commit
together, so the restarted move copies every range from where it stopped, and the checks (verify,
the dump diff, pt-table-sync) find the moved tables equal."""

from __future__ import annotations

import random
from typing import Any

from drill.kills import CUTOVER_POINTS, Kill
from drill.rounds.base import Slot
from drill.rounds.forward import ForwardRound

COPY_THREADS = 4
STREAM_POINTS = ("parallel.after_commit", "parallel.before_commit")
MAX_STREAM_K = 12  # a 2-table round of 20,000 rows a table commits some 30-40 chunks over 4 streams
GATE_POINT = "gate.after_chunk"
MAX_GATE_K = 5  # the gate compares a 20,000-row table in 10 or more chunks


class ParallelCopyRound(ForwardRound):
    """A forward round with four copy streams, killed inside them first."""

    name = "parallel"
    label = f"copy{COPY_THREADS}"

    def takes(self, slot: Slot) -> bool:
        """Every fourth round, when it is not a window round (with the default --window-every 2:
        rounds 3, 7, 11, ...)."""
        return slot.window is None and slot.number % 4 == 3

    def forward_kills(self, slot: Slot, targeted_index: int, rng: random.Random) -> list[Kill]:
        """A stream's n-th chunk commit (lands by construction: the copy commits more than that),
        then on the restart the gate's n-th compared chunk (the gate trails the copy) or a cutover
        point."""
        point = STREAM_POINTS[(slot.number // 4) % len(STREAM_POINTS)]  # rounds 3, 7, 11: alternating
        first = Kill(f"{point}:{rng.randint(1, MAX_STREAM_K)}")
        if rng.random() < 0.5:
            return [first, Kill(f"{GATE_POINT}:{rng.randint(1, MAX_GATE_K)}")]
        return [first, Kill(rng.choice(CUTOVER_POINTS))]

    def move_keys(self) -> dict[str, Any]:
        """Four copy streams."""
        return {"copy_threads": COPY_THREADS}


KIND = ParallelCopyRound()
