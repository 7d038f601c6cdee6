"""The move's state machine, declared as data and read top to bottom like the spec's section 5.

Each transition's ``before`` callback commits the checkpoint row for the new state on the target,
so the persisted state is never behind what the daemon goes on to do. The side effects of each
phase live in the phase modules (copy, cutover, hooks); this module only says what may follow what.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from transitions import MachineError
from transitions.extensions.asyncio import AsyncMachine

from tablemover.log import event


class State(enum.StrEnum):
    """Persisted move states, in the order a move passes through them."""

    PREPARED = "PREPARED"  # target tables created, start GTID captured
    COPYING = "COPYING"  # chunk copy + binlog apply until caught up
    CUTOVER_STARTED = "CUTOVER_STARTED"  # intent written; RENAME may or may not have happened
    RENAMED = "RENAMED"  # source tables renamed away; drain_gtid known
    DRAINED = "DRAINED"  # every source event up to drain_gtid is on the target
    HOOK_FIRED = "HOOK_FIRED"  # on-success hook exited 0
    DONE = "DONE"  # stream stopped, daemon-owned artefacts cleaned
    # The rollback window (rollback_window_s > 0): the target's writes stream back to the renamed
    # source tables until the window elapses (DONE) or an operator rolls back.
    WINDOW_OPEN = "WINDOW_OPEN"  # reverse feed running; `tablemover rollback` possible
    ROLLBACK_STARTED = "ROLLBACK_STARTED"  # intent written; the target RENAME may or may not have happened
    ROLLBACK_RENAMED = "ROLLBACK_RENAMED"  # target tables renamed away; reverse drain position known
    ROLLBACK_DRAINED = "ROLLBACK_DRAINED"  # the source's renamed tables hold every target write
    ROLLED_BACK = "ROLLED_BACK"  # source tables back under their names, on-rollback hook exited 0
    ABORTED = "ABORTED"  # stopped by the operator before cutover; resumable by `run`
    FAILED = "FAILED"  # gave up; needs an operator


# (trigger, source state(s), destination) -- the only moves a move can make.
TRANSITIONS: tuple[tuple[str, tuple[State, ...], State], ...] = (
    ("start_copy", (State.PREPARED,), State.COPYING),
    ("begin_cutover", (State.COPYING,), State.CUTOVER_STARTED),
    ("cancel_cutover", (State.CUTOVER_STARTED,), State.COPYING),
    ("mark_renamed", (State.CUTOVER_STARTED,), State.RENAMED),
    ("mark_drained", (State.RENAMED,), State.DRAINED),
    ("mark_hook_fired", (State.DRAINED,), State.HOOK_FIRED),
    ("finish", (State.HOOK_FIRED,), State.DONE),
    ("open_window", (State.HOOK_FIRED,), State.WINDOW_OPEN),
    ("close_window", (State.WINDOW_OPEN,), State.DONE),
    ("begin_rollback", (State.WINDOW_OPEN,), State.ROLLBACK_STARTED),
    ("cancel_rollback", (State.ROLLBACK_STARTED,), State.WINDOW_OPEN),
    ("mark_rollback_renamed", (State.ROLLBACK_STARTED,), State.ROLLBACK_RENAMED),
    ("mark_rollback_drained", (State.ROLLBACK_RENAMED,), State.ROLLBACK_DRAINED),
    ("mark_rolled_back", (State.ROLLBACK_DRAINED,), State.ROLLED_BACK),
    ("abort", (State.PREPARED, State.COPYING, State.CUTOVER_STARTED), State.ABORTED),
    ("resume_aborted", (State.ABORTED,), State.COPYING),
    ("fail", (State.PREPARED, State.COPYING, State.CUTOVER_STARTED), State.FAILED),
)

# States after which the source tables may already be renamed: `abort` is refused from here on.
PAST_POINT_OF_NO_RETURN = frozenset(
    {
        State.RENAMED,
        State.DRAINED,
        State.HOOK_FIRED,
        State.DONE,
        State.WINDOW_OPEN,
        State.ROLLBACK_STARTED,
        State.ROLLBACK_RENAMED,
        State.ROLLBACK_DRAINED,
        State.ROLLED_BACK,
    }
)
# States in which the target's changes stream back to the source (the reverse feed runs).
REVERSE_FEED = frozenset({State.WINDOW_OPEN, State.ROLLBACK_STARTED, State.ROLLBACK_RENAMED})
TERMINAL = frozenset({State.DONE, State.FAILED, State.ROLLED_BACK})
# States from which a move can fail for good (the sources of the "fail" transition).
FAILABLE = frozenset(next(sources for trigger, sources, _ in TRANSITIONS if trigger == "fail"))


Persist = Callable[[State, State, dict[str, Any]], Awaitable[None]]


class MoveMachine:
    """The move's current state, changed only through :data:`TRANSITIONS`.

    ``persist(source, dest, kwargs)`` runs *before* the state changes: it commits the checkpoint row,
    so if it fails the in-memory state stays where the persisted one is.
    """

    def __init__(self, initial: State, persist: Persist) -> None:
        self.state: str = initial.value
        self._persist = persist
        self._machine = AsyncMachine(
            model=self,
            states=[s.value for s in State],
            initial=initial.value,
            auto_transitions=False,
            send_event=True,
        )
        for trigger, sources, dest in TRANSITIONS:
            self._machine.add_transition(trigger, [s.value for s in sources], dest.value, before=self._before)

    async def _before(self, ev: Any) -> None:
        await self._persist(State(ev.transition.source), State(ev.transition.dest), dict(ev.kwargs))

    @property
    def current(self) -> State:
        """The current state."""
        return State(self.state)

    async def fire(self, trigger: str, **kwargs: Any) -> State:
        """Run a transition (persisting it first) and return the new state."""
        try:
            await self.trigger(trigger, **kwargs)  # type: ignore[attr-defined]
        except MachineError as exc:
            raise IllegalTransition(f"cannot {trigger} from state {self.state}") from exc
        return self.current


def log_state_change(previous: State, state: State, level: int = logging.INFO) -> None:
    """Log a persisted transition: the one "state changed" line every runner writes."""
    # "state" stays the new state for log readers; "from"/"to" say which way it went.
    event("state changed", level, **{"from": previous.value, "to": state.value, "state": state.value})


class IllegalTransition(RuntimeError):
    """A transition was asked for that the table does not allow; a bug, never user input."""
