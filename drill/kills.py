"""The kill plan of the forward move: fault points and random instants."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

MAX_COMMIT_K = 22  # writer.*_commit:K picks K in 1..this (a 2-table run commits about 22-25 times)

CUTOVER_POINTS = (
    "state.CUTOVER_STARTED",  # intent written, nothing renamed yet
    "cutover.after_rename",  # RENAME committed, RENAMED checkpoint not written
    "state.RENAMED",
    "state.DRAINED",
    "hook.before_success",  # hook attempt recorded, hook not started
    "state.HOOK_FIRED",
)
WRITER_POINTS = ("writer.before_commit", "writer.after_commit")
TARGETED_POINTS = CUTOVER_POINTS + WRITER_POINTS


@dataclass
class Kill:
    """One planned SIGKILL: at a fault point, or at ``fraction`` of the run's expected duration."""

    point: str = ""  # TABLEMOVER_FAULTS spec; "" for a random instant
    fraction: float = 0.0
    delay_s: float | None = None  # the random instant, once chosen
    happened: bool = False
    run_attempted: bool = False
    missed: str = ""  # why it did not happen, when not the usual reason

    def label(self) -> str:
        """How the table shows it."""
        text = self.point or f"random@{self.delay_s if self.delay_s is not None else 0:.2f}s"
        if self.run_attempted and not self.happened:
            text += f" ({self.missed or ('not reached' if self.point else 'run ended first')})"
        return text

    def as_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": "fault" if self.point else "random",
            "point": self.point or None,
            "delay_s": None if self.delay_s is None else round(self.delay_s, 3),
            "happened": self.happened,
        }


def plan_kills(number: int, targeted_index: int, rng: random.Random) -> list[Kill]:
    """Odd rounds cycle through the targeted points, even rounds kill at a random instant; every
    third round kills the first restart too (a later cutover point, or another random instant)."""

    def targeted(point: str) -> Kill:
        return Kill(f"{point}:{rng.randint(1, MAX_COMMIT_K)}" if point in WRITER_POINTS else point)

    if number % 2 == 1:
        kills = [targeted(TARGETED_POINTS[targeted_index % len(TARGETED_POINTS)])]
    else:
        kills = [Kill(fraction=rng.random())]
    if number % 3 == 0:
        first = kills[0].point.split(":")[0]
        if first in WRITER_POINTS:
            kills.append(Kill(rng.choice(CUTOVER_POINTS)))
        elif first in CUTOVER_POINTS and first != CUTOVER_POINTS[-1]:
            kills.append(Kill(rng.choice(CUTOVER_POINTS[CUTOVER_POINTS.index(first) + 1 :])))
        else:
            kills.append(Kill(fraction=rng.random()))
    return kills
