"""Test-only fault injection: SIGKILL ourselves at a named point.

``TABLEMOVER_FAULTS="writer.after_commit:5,cutover.after_rename"`` kills the process the 5th time
the writer passes ``writer.after_commit`` (or the 1st time for the rename point).
``TABLEMOVER_DELAYS="copy.after_read:0.05"`` sleeps at a point instead, to widen a race window.
The environment is read once at import; in production both are unset and each point costs one
dict lookup.
"""

from __future__ import annotations

import os
import signal

import anyio

_COUNTS: dict[str, int] = {}


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, nth = part.partition(":")
        points[name] = int(nth) if nth else 1
    return points


_SPEC = os.environ.get("TABLEMOVER_FAULTS", "")
_FAILS = {p.strip()[: -len("!fail")] for p in _SPEC.split(",") if p.strip().endswith("!fail")}
_ARMED = _parse(",".join(p for p in _SPEC.split(",") if not p.strip().endswith("!fail")))


def hit(point: str) -> None:
    """Die with SIGKILL if ``point`` is armed and this is its n-th pass."""
    if not _ARMED or point not in _ARMED:
        return
    _COUNTS[point] = _COUNTS.get(point, 0) + 1
    if _COUNTS[point] >= _ARMED[point]:
        os.kill(os.getpid(), signal.SIGKILL)


def _parse_delays(spec: str) -> dict[str, float]:
    delays: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, seconds = part.partition(":")
        delays[name] = float(seconds)
    return delays


_DELAYS = _parse_delays(os.environ.get("TABLEMOVER_DELAYS", ""))


async def delay(point: str) -> None:
    """Sleep at ``point`` when ``TABLEMOVER_DELAYS="point:seconds"`` arms it (tests widen races)."""
    if _DELAYS and point in _DELAYS:
        await anyio.sleep(_DELAYS[point])


def fail(point: str) -> None:
    """Raise a connection error at ``point`` when ``TABLEMOVER_FAULTS`` arms ``point`` with ``!fail``.

    ``TABLEMOVER_FAULTS="cutover.after_rename!fail"`` simulates a connection that drops right after
    the server received a statement, the "outcome unknown" case of the cutover.
    """
    if _FAILS and point in _FAILS:
        _FAILS.discard(point)  # once: the retry after an injected failure must be able to succeed
        raise ConnectionResetError(f"injected connection failure at {point}")
