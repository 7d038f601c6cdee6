"""The round kinds of the crash drill, one module each, and the registry that picks a round's kind.

Every round moves fresh schemas under write load and kills the forward move as
:func:`drill.kills.plan_kills` plans it; its kind decides the rest (:class:`~drill.rounds.base.RoundKind`):
what it configures and plans beyond that, what it does once the forward runs are over, and what its
checks expect. To add a kind: a module here with a :class:`~drill.rounds.base.RoundKind` subclass and
``KIND = ...``, and its line in :data:`KINDS`.
"""

from __future__ import annotations

from drill.rounds import elapse, forward, parallel, read_replica, replica, rollback
from drill.rounds.base import RoundKind, Slot, run_round

# Every round kind, in the order they are offered a round: the first whose ``takes`` accepts the
# round's slot runs it (so a kind that takes some of another's rounds goes above it).
KINDS: tuple[RoundKind, ...] = (
    elapse.KIND,
    rollback.KIND,
    parallel.KIND,
    replica.KIND,
    read_replica.KIND,
    forward.KIND,
)


# The kinds that run outside the rollback window's schedule, so that ``--only-kind`` may give them
# every round (a window kind's plan depends on its place among the window rounds).
ANY_SLOT = (forward.KIND, parallel.KIND, replica.KIND, read_replica.KIND)


def by_name(name: str) -> RoundKind:
    """The kind called ``name``."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise LookupError(f"no round kind {name!r}")


def pick(slot: Slot) -> RoundKind:
    """The kind that runs the round at ``slot``."""
    for kind in KINDS:
        if kind.takes(slot):
            return kind
    raise LookupError(f"no round kind takes round {slot.number}")


__all__ = ["ANY_SLOT", "KINDS", "RoundKind", "Slot", "by_name", "pick", "run_round"]
