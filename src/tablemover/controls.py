"""What an operator can ask of a running move: stop, abort, pause, release the cutover, resize
chunks, new throttle limits.

The service shell (signals, control socket) sets these; the move's phases read them. Neither side
knows the other: a test can drive a move through :class:`Controls` without a socket, and the shell
can be tested against a :class:`Controls` with no move behind it.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from tablemover.config import ThrottleSection
from tablemover.copy import MAX_CHUNK, MIN_CHUNK
from tablemover.log import event
from tablemover.machine import State

# Before the cutover has begun nothing is renamed, so an abort only stops copying.
ABORTABLE = frozenset({State.PREPARED, State.COPYING})


class Controls:
    """The operator's requests, as plain state the move reads."""

    def __init__(self, throttle: ThrottleSection) -> None:
        self.stop_requested = ""  # the name of what asked (SIGTERM, abort); "" while none did
        self.abort_requested = False
        self.paused = False
        self._unpaused = anyio.Event()
        self._unpaused.set()
        self.chunk_size_override = 0
        self.cutover_released = anyio.Event()
        self.rollback_requested = False
        self.rollback_asked = anyio.Event()
        self.throttle_limits = throttle
        # Set by the runner: what a stop cancels right now (the driver, or everything).
        self.on_stop: Callable[[], None] = lambda: None

    def request_stop(self, reason: str = "SIGTERM") -> bool:
        """Stop soon without changing state; False when a stop was already asked for.

        Safe at any point, mid-cutover included: the current batch is committed and the next start
        resumes from the persisted state.
        """
        if self.stop_requested:
            return False
        self.stop_requested = reason
        then = "then recording ABORTED" if self.abort_requested else "the state is kept"
        event(f"{reason} received: finishing the current batch and stopping; {then}")
        self.on_stop()
        return True

    def abort(self, state: State) -> str:
        """Ask for ABORTED; returns why it is refused ("" when accepted)."""
        # Before the first attempt has read the checkpoint the state is not known here; the runner
        # records ABORTED after the stop, and refuses then (exit 3) if the move was past COPYING.
        if state not in ABORTABLE:
            return (
                f"refused: the move is in {state.value}; from CUTOVER_STARTED on the source "
                "tables may already be renamed, so the move can only go forward"
            )
        self.abort_requested = True
        self.request_stop("abort")
        return ""

    def pause(self) -> None:
        """Hold the copy (the binlog apply goes on)."""
        self.paused = True
        if self._unpaused.is_set():
            self._unpaused = anyio.Event()
        event("copying paused by the operator (the binlog apply goes on)")

    def unpause(self) -> None:
        """Let the copy go on."""
        self.paused = False
        self._unpaused.set()
        event("copying resumed by the operator")

    async def wait_unpaused(self) -> None:
        """Return once the copy is unpaused."""
        await self._unpaused.wait()

    def release_cutover(self) -> None:
        """Let a postponed cutover go ahead."""
        self.cutover_released.set()
        event("cutover released by the operator")

    def request_rollback(self, state: State) -> str:
        """Ask for a rollback during the window; returns why it is refused ("" when accepted)."""
        if state in {State.ROLLBACK_STARTED, State.ROLLBACK_RENAMED, State.ROLLBACK_DRAINED}:
            return ""  # already rolling back: asking again changes nothing
        if state is not State.WINDOW_OPEN:
            return (
                f"refused: the move is in {state.value}; a rollback is possible only while the rollback "
                "window is open (WINDOW_OPEN: after the success hook, for rollback_window_s seconds)"
            )
        self.rollback_requested = True
        self.rollback_asked.set()
        event("rollback requested by the operator")
        return ""

    def rollback_declined(self) -> None:
        """The rollback did not happen (a hook said no): the window stays open, a new request may come."""
        self.rollback_requested = False
        self.rollback_asked = anyio.Event()

    def set_chunk_size(self, size: int) -> str:
        """Override the chunk size; returns why it is refused ("" when accepted)."""
        if not MIN_CHUNK <= size <= MAX_CHUNK:
            return f"chunk size must be between {MIN_CHUNK} and {MAX_CHUNK}"
        self.chunk_size_override = size
        event("chunk size set by the operator", chunk_size=size)
        return ""

    def reload_throttle(self, limits: ThrottleSection) -> None:
        """New [throttle] limits, read on the copier's next pass."""
        self.throttle_limits = limits
        event("SIGHUP: throttle settings reloaded", **limits.model_dump())
