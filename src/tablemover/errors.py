"""Every error tablemover raises on purpose, with the exit code the CLI turns it into.

Messages are written for the operator who reads them at 3 a.m.: they name the object that is wrong
and the fix, in one paragraph, and the CLI prints them without a traceback.
"""

from __future__ import annotations

from tablemover.redact import digest


class TablemoverError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(TablemoverError):
    """The configuration file or an environment override is invalid; nothing was touched."""

    exit_code = 2


class BadInput(TablemoverError):
    """An operator's command or argument cannot be carried out as given; nothing was changed."""

    exit_code = 2


class PreflightError(TablemoverError):
    """A preflight check failed; nothing on either server was changed."""

    exit_code = 2


class SafetyRefusal(TablemoverError):
    """The daemon found a state it will not guess about; an operator has to decide.

    ``dooms_move`` marks refusals after which the move can only start over (its target tables no
    longer describe the source): the daemon persists them as state FAILED with the reason, so
    `status`, `check` and the next `run` say the same thing instead of replaying into it again.
    """

    exit_code = 3
    dooms_move = False


class MoveFailed(TablemoverError):
    """A runtime failure. The checkpoint is intact, so `tablemover run` resumes the move."""

    exit_code = 1


class StreamError(MoveFailed):
    """The binlog stream broke and did not come back within the retry bound."""


class UnreproducibleEvent(SafetyRefusal):
    """A source event touches a moved table in a way the row-based apply cannot reproduce exactly.

    Raised before any row of the event's transaction is applied; the checkpoint stays before it.
    """

    dooms_move = True

    def __init__(self, message: str, *, gtid: str = "", table: str = "", statement: str = "") -> None:
        super().__init__(message)
        self.gtid = gtid
        self.table = table
        # Kept in the checkpoint detail, the log and TABLEMOVER_ERROR: a session's statement may
        # carry secrets in its literals, so only its digest is ever kept.
        self.statement = digest(statement)


class SchemaChanged(UnreproducibleEvent):
    """A moved table's definition changed under us (DDL or TRUNCATE during the move)."""


class UnreproducibleRow(SafetyRefusal):
    """A source row holds a value the move cannot write to the target exactly (today: a MySQL JSON
    document with a DECIMAL, date/time or other opaque value inside).

    Raised by the copy before the chunk holding the row is handed to the writer, so nothing of that
    chunk is on the target. It dooms the move: changing the value on the source writes a binlog
    event whose before-image holds the value again, which the stream refuses in turn.
    """

    dooms_move = True

    def __init__(self, message: str, *, table: str, column: str, key: str) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.key = key


class BinlogPurged(SafetyRefusal):
    """The source no longer has the binlogs the move must resume from."""


class MoveOwned(TablemoverError):
    """Another daemon owns this move right now; nothing was changed."""

    exit_code = 2


class MoveTakenOver(MoveOwned):
    """Another daemon (or an offline command) took this move while this daemon ran it.

    Raised by a target transaction that could not prove it still owns the move (the lock is held
    by another connection, or the checkpoint row it would write exists already): the transaction
    was rolled back, nothing of it was committed, and this daemon stops. A re-run of it is refused
    while the other one runs, hence exit 2 like :class:`MoveOwned`.
    """


class TargetRejectedWrite(SafetyRefusal):
    """The target refused to store a row exactly as the source has it (an error, or a conversion
    it reported as a warning): the target table's definition no longer matches the source's.

    Raised after the writer rolled its transaction back, so nothing of that transaction is on the
    target; the rows copied before may already have been changed by whatever altered the table.
    """

    dooms_move = True

    def __init__(self, table: str, code: int, detail: str, *, level: str = "error") -> None:
        super().__init__(
            f"the target refused to store a row of {table} as the source has it: MySQL {level} "
            f"{code} ({detail}). The target table's definition no longer matches the source's: "
            "someone altered it during the move. Nothing of the failing transaction was committed. "
            "Find and undo (or stop) what altered it, then start the move over: "
            "`tablemover discard -c FILE --yes`, then `tablemover run -c FILE`."
        )
        self.table = table
        self.code = code
        self.detail = detail


class XAUnresolved(UnreproducibleEvent):
    """A prepared XA transaction changed moved tables and its outcome did not come in time.

    Its changes may be applied only with its XA COMMIT; the stream holds them back, with everything
    after them, up to a bound. Past the bound the move stops; nothing of it (or after it) was applied.
    """

    def __init__(self, message: str, *, xid: str, gtid: str) -> None:
        super().__init__(message, gtid=gtid)
        self.xid = xid
