"""Every error tablemover raises on purpose, with the exit code the CLI turns it into.

Messages are written for the operator who reads them at 3 a.m.: they name the object that is wrong
and the fix, in one paragraph, and the CLI prints them without a traceback.
"""

from __future__ import annotations


class TablemoverError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(TablemoverError):
    """The configuration file or an environment override is invalid; nothing was touched."""

    exit_code = 2


class PreflightError(TablemoverError):
    """A preflight check failed; nothing on either server was changed."""

    exit_code = 2


class SafetyRefusal(TablemoverError):
    """The daemon found a state it will not guess about; an operator has to decide."""

    exit_code = 3


class MoveFailed(TablemoverError):
    """A runtime failure. The checkpoint is intact, so `tablemover run` resumes the move."""

    exit_code = 1


class StreamError(MoveFailed):
    """The binlog stream broke and did not come back within the retry bound."""


class SchemaChanged(MoveFailed):
    """A moved table's definition changed under us (DDL during the move)."""
