"""Progress bars on a terminal: one per table, rows copied of the estimate, rows/s and ETA.

Only on an interactive terminal with text logs; under systemd or in a pipe the JSON "progress" log
lines carry the same figures. Log records are printed through the bars' console so the two do not
garble each other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tablemover import log


class _RowsPerSecond(TransferSpeedColumn):
    """TransferSpeedColumn speaks bytes; we count rows."""

    def render(self, task: Any) -> Any:
        speed = task.finished_speed or task.speed
        from rich.text import Text

        return Text(f"{speed or 0:,.0f} rows/s", style="progress.data.speed")


class _Eta(TimeRemainingColumn):
    """No ETA while the copy waits: a rate from before the wait would promise a false finish."""

    def render(self, task: Any) -> Any:
        if task.fields.get("waiting"):
            from rich.text import Text

            return Text("-:--:--", style="progress.remaining")
        return super().render(task)


def wanted() -> bool:
    """Bars only for a person at a terminal reading text logs."""
    return sys.stderr.isatty() and not log.wants_json_now()


async def show(
    totals: dict[str, int],
    copied: Callable[[], dict[str, tuple[int, bool]]],
    done: anyio.Event,
    waiting: Callable[[], str] = lambda: "",
) -> None:
    """Render bars until ``done``; ``copied()`` returns {table: (rows copied, finished)}.

    ``waiting()`` says why the move waits ("" when it does not); it is shown under the bars.
    """
    console = Console(stderr=True)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        _Eta(),
        TextColumn("{task.fields[waiting]}", style="yellow"),
        console=console,
    )
    tasks: dict[str, TaskID] = {t: bars.add_task(t, total=max(n, 1), waiting="") for t, n in totals.items()}
    with bars:
        log.print_through(console)
        try:
            while not done.is_set():
                _update(bars, tasks, totals, copied(), waiting())
                with anyio.move_on_after(0.5):
                    await done.wait()
            _update(bars, tasks, totals, copied(), "")  # the final figures stay on screen
        finally:
            log.print_through(None)


def _update(
    bars: Progress,
    tasks: dict[str, TaskID],
    totals: dict[str, int],
    copied: dict[str, tuple[int, bool]],
    waiting: str,
) -> None:
    for table, (rows, finished) in copied.items():
        if table in tasks:
            # The total is the optimizer's estimate until the table is done, then the exact count.
            total = rows if finished else max(rows, totals.get(table, 0))
            note = f"waiting: {waiting}" if waiting and not finished else ""
            bars.update(tasks[table], completed=rows, total=max(total, 1), waiting=note)
