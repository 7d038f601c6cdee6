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

import pymysql
from asyncmy.errors import InterfaceError, MySQLError

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
    if isinstance(exc, InterfaceError):
        # asyncmy: the connection is closed ("Not connected") or was left unusable by a cancelled
        # read ("Cancelled during execution"); a fresh connection gets past it.
        return True
    if isinstance(exc, MySQLError):
        return error_code(exc) in TRANSIENT_CODES
    if isinstance(exc, pymysql.err.MySQLError):  # the binlog stream's driver
        return bool(exc.args) and exc.args[0] in TRANSIENT_CODES
    # Broken sockets below the driver: reset, refused, EOF mid-packet (IncompleteReadError).
    return isinstance(exc, OSError | EOFError)


def _consequence(exc: BaseException) -> bool:
    # A driver error without a number is what a connection reports after something else broke
    # it (a sibling task's failure cancelled its query): a symptom, never the cause to act on.
    return isinstance(exc, MySQLError) and not error_code(exc)


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

    Our own errors first (they carry the decision; a final one before a transient one), then a
    database error with a real code, then anything else but a driver error without a code (asyncmy
    reports a connection whose query was cancelled because a sibling task failed as code 0,
    "Cancelled during execution": a consequence, not the cause), and only then those.
    """
    found = leaves(exc)
    ours = [leaf for leaf in found if isinstance(leaf, TablemoverError)]
    if ours:
        # A final decision (a refusal) outweighs a retryable report raised alongside it.
        return next((leaf for leaf in ours if not is_transient(leaf)), ours[0])
    for leaf in found:
        if isinstance(leaf, MySQLError) and error_code(leaf):
            return leaf
    for leaf in found:
        if isinstance(leaf, Exception) and not _consequence(leaf):
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

    def attempt_failed(self, *, committed: bool, lasted_s: float) -> None:
        """Account for an attempt that just failed: did the outage before it end?

        It did when the attempt committed work, or when it ran for a whole budget without failing:
        an idle move (nothing to copy or apply, so nothing to commit) that meets one fault an hour
        must not find the budget of the previous one used up.
        """
        if committed or lasted_s >= self.limit_s:
            self.refill()

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
