"""The one retry policy: which errors are transient, and how long the daemon rides through them.

Pure logic (no I/O) so the classification and the budget are unit-tested; the move runner owns
the loop that uses them. A transient error is one a fresh connection can get past: a deadlock or
lock wait timeout, a killed or lost connection, a server that is restarting or shutting down.
Everything tablemover raises on purpose is final, except the few of its own errors that wrap a
lost connection (:data:`TRANSIENT_OWN`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asyncmy.errors import MySQLError

from tablemover.db import ConnectError, error_code
from tablemover.errors import StreamError, TablemoverError

# MySQL/MariaDB error numbers after which reconnecting and resuming from the checkpoint is safe.
TRANSIENT_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1077,  # normal shutdown (MariaDB)
        1152,  # aborted connection
        1158,  # error reading communication packets
        1159,  # timeout reading communication packets
        1160,  # error writing communication packets
        1161,  # timeout writing communication packets
        1205,  # lock wait timeout exceeded
        1213,  # deadlock found
        1317,  # query execution was interrupted (KILL QUERY)
        1927,  # connection was killed (MariaDB)
        2002,  # cannot connect through the socket
        2003,  # cannot connect to the server (it is down or restarting)
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection at a system call
        4031,  # disconnected by the server for inactivity (MySQL)
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when a fresh attempt from the last committed checkpoint may get past ``exc``."""
    if isinstance(exc, ConnectError | StreamError):
        return True
    if isinstance(exc, TablemoverError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, MySQLError):
        return error_code(exc) in TRANSIENT_CODES
    # Broken sockets below the driver: reset, refused, EOF mid-packet (IncompleteReadError).
    return isinstance(exc, OSError | EOFError)


def describe_error(exc: BaseException) -> str:
    """``error 1213: Deadlock found ...`` for driver errors, the message otherwise."""
    code = error_code(exc)
    if code is not None and len(exc.args) > 1:
        return f"error {code}: {exc.args[1]}"
    return str(exc) or type(exc).__name__


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; ``[exc]`` for a plain one."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(leaves(inner))
        return out
    return [exc]


def primary_error(exc: BaseException) -> BaseException:
    """The error to act on from what a task group raised.

    Our own errors first (they carry the decision), then a database error with a real code (asyncmy
    reports a query cancelled because a sibling task failed as code 0, "Cancelled during
    execution": a consequence, not the cause), then anything else.
    """
    found = leaves(exc)
    for leaf in found:
        if isinstance(leaf, TablemoverError):
            return leaf
    for leaf in found:
        if isinstance(leaf, MySQLError) and error_code(leaf):
            return leaf
    for leaf in found:
        if isinstance(leaf, Exception):
            return leaf
    return found[0] if found else exc


class RetryBudget:
    """Exponential backoff bounded by a time budget per outage.

    ``next_delay`` returns how long to wait before the next attempt, or None once the outage has
    lasted ``limit_s``; ``refill`` starts a new outage (called when work flowed again).
    """

    def __init__(
        self,
        limit_s: float,
        *,
        first_s: float = 0.5,
        max_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_s = limit_s
        self.first_s = first_s
        self.max_s = max_s
        self._clock = clock
        self.attempts = 0
        self._since: float | None = None

    @property
    def elapsed_s(self) -> float:
        """How long the current outage has lasted."""
        return 0.0 if self._since is None else self._clock() - self._since

    def refill(self) -> None:
        """Work flowed since the last failure: the next failure starts a new outage."""
        self.attempts = 0
        self._since = None

    def next_delay(self) -> float | None:
        """The wait before the next attempt, or None when the outage used up the budget."""
        now = self._clock()
        if self._since is None:
            self._since = now
        if now - self._since >= self.limit_s:
            return None
        delay = min(self.first_s * float(2**self.attempts), self.max_s)
        self.attempts += 1
        return min(delay, max(0.0, self.limit_s - (now - self._since)))
