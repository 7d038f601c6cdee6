"""The one logger: JSON lines under systemd or when piped, readable text on a terminal.

Structured fields are passed as ``extra={"fields": {...}}`` via :func:`event`, so a JSON consumer
(journald, Loki) gets them as keys instead of parsing a sentence.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("tablemover")


_context: dict[str, str] = {}  # fields every line carries (the move's name), set once per process


def set_context(**fields: str) -> None:
    """Add fields to every later log line (``move=`` once the config is read)."""
    _context.update(fields)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            # RFC 3339 for log stores; "ts" (epoch seconds) stays for scripts that subtract times.
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="microseconds"),
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            **_context,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{stamp} {record.levelname:<7} {record.getMessage()}" + (f"  {tail}" if tail else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _ConsoleAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr, or through a rich console while progress bars are on screen."""

    console: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.console is not None:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        else:
            super().emit(record)


_handler: _ConsoleAwareHandler | None = None
_json = False


def print_through(console: Any) -> None:
    """Route log records through ``console`` (progress bars on screen), or back to stderr (None)."""
    if _handler is not None:
        _handler.console = console


def wants_json_now() -> bool:
    """Whether the logger was set up for JSON lines."""
    return _json


def wants_json() -> bool:
    """JSON when stderr is not a terminal or when journald owns stderr."""
    return bool(os.environ.get("JOURNAL_STREAM")) or not sys.stderr.isatty()


def setup(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Configure the tablemover logger once per process."""
    global _handler, _json
    handler = _ConsoleAwareHandler(sys.stderr)
    use_json = wants_json() if json_lines is None else json_lines
    _handler, _json = handler, use_json
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    # asyncmy logs every server warning (INSERT IGNORE duplicates, "database exists") and
    # mysql-replication its reconnects; we surface what matters ourselves, in our format.
    for noisy in ("asyncmy", "pymysqlreplication"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def event(msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``."""
    logger.log(level, msg, extra={"fields": fields})
