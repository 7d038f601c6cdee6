"""The independent checks of a finished move: dump diffs, pt-table-sync, the state graph, hooks,
acknowledged writes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from drill.common import Conn, Drill
from drill.daemon import tablemover_verify
from drill.db import BinlogPos, connect, query
from drill.load import ACKED_ID_BASE
from tablemover.local.mariadb import LocalPair

# Spec section 3's state graph, written out here rather than imported from tablemover so that the
# check does not share the daemon's idea of what is legal.
LEGAL_NEXT: dict[str, frozenset[str]] = {
    "": frozenset({"PREPARED"}),
    "PREPARED": frozenset({"COPYING"}),
    "COPYING": frozenset({"CUTOVER_STARTED"}),
    "CUTOVER_STARTED": frozenset({"COPYING", "RENAMED"}),
    "RENAMED": frozenset({"DRAINED"}),
    "DRAINED": frozenset({"HOOK_FIRED"}),
    "HOOK_FIRED": frozenset({"DONE", "WINDOW_OPEN"}),
    "DONE": frozenset(),
    # The rollback window (README "The rollback window"): it elapses (DONE) or rolls back; a declined
    # or unrenamed rollback returns to WINDOW_OPEN.
    "WINDOW_OPEN": frozenset({"DONE", "ROLLBACK_STARTED"}),
    "ROLLBACK_STARTED": frozenset({"WINDOW_OPEN", "ROLLBACK_RENAMED"}),
    "ROLLBACK_RENAMED": frozenset({"ROLLBACK_DRAINED"}),
    "ROLLBACK_DRAINED": frozenset({"ROLLED_BACK"}),
    "ROLLED_BACK": frozenset(),
}
ROLLBACK_STATES = frozenset({"ROLLBACK_STARTED", "ROLLBACK_RENAMED", "ROLLBACK_DRAINED", "ROLLED_BACK"})


@dataclass
class TableDiff:
    """An ordered comparison of one renamed source table with its target table."""

    table: str
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0  # on the source, not on the target
    extra: int = 0  # on the target, not on the source
    different: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """No row differs."""
        return self.missing == self.extra == self.different == 0

    def note(self, text: str) -> None:
        """Keep the first few differences as examples."""
        if len(self.examples) < 5:
            self.examples.append(text)


def _rows(conn: Conn, sql: str) -> Iterator[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        yield from cur


def dump_diff(pair: LocalPair, src: tuple[str, str], dst: tuple[str, str]) -> TableDiff:
    """``SELECT * ... ORDER BY id`` on both sides, merged by id and compared row by row."""
    diff = TableDiff(f"{src[0]}.{src[1]} vs {dst[0]}.{dst[1]}")
    sconn, tconn = connect(pair.source.socket, streaming=True), connect(pair.target.socket, streaming=True)
    try:
        srows = _rows(sconn, f"SELECT * FROM `{src[0]}`.`{src[1]}` ORDER BY id")
        trows = _rows(tconn, f"SELECT * FROM `{dst[0]}`.`{dst[1]}` ORDER BY id")
        s, t = next(srows, None), next(trows, None)
        while s is not None or t is not None:
            if t is None or (s is not None and s[0] < t[0]):
                assert s is not None
                diff.source_rows += 1
                diff.missing += 1
                diff.note(f"id {s[0]} missing on the target")
                s = next(srows, None)
            elif s is None or t[0] < s[0]:
                diff.target_rows += 1
                diff.extra += 1
                diff.note(f"id {t[0]} on the target only")
                t = next(trows, None)
            else:
                diff.source_rows += 1
                diff.target_rows += 1
                if s != t:
                    diff.different += 1
                    diff.note(f"id {s[0]}: source {s!r} target {t!r}")
                s, t = next(srows, None), next(trows, None)
    finally:
        sconn.close()
        tconn.close()
    return diff


def pt_table_sync(binary: str, pair: LocalPair, src: tuple[str, str], dst: tuple[str, str]) -> str:
    """'' when ``pt-table-sync --print`` finds nothing to change, else what it printed."""
    proc = subprocess.run(
        [
            binary,
            "--print",
            f"S={pair.source.socket},u=root,D={src[0]},t={src[1]}",
            f"S={pair.target.socket},u=root,D={dst[0]},t={dst[1]}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode == 0 and not proc.stdout.strip():
        return ""
    return f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[:1500]}"


@dataclass(frozen=True)
class StateRules:
    """What a round's transitions must hold besides :data:`LEGAL_NEXT`, by the kind of round: how they
    end, the states written exactly once, and the states the round must never reach."""

    ending: tuple[str, ...]
    once: tuple[str, ...]
    never: frozenset[str]


def transition_problems(states: list[str], rules: StateRules) -> list[str]:
    """What is wrong with a finished move's sequence of transition states (empty: nothing).

    ``rules``: the round kind's (no rollback window, the window elapsed, or rolled back).
    """
    problems = []
    for before, after in zip(["", *states], states, strict=False):
        if after not in LEGAL_NEXT.get(before, frozenset()):
            problems.append(f"illegal transition {before or 'start'} -> {after}")
    ending = list(rules.ending)
    if states[-len(ending) :] != ending:
        problems.append(f"does not end with {', '.join(ending)} (ends {states[-len(ending) :]})")
    for once in rules.once:
        if states.count(once) != 1:
            problems.append(f"{once} written {states.count(once)} times")
    problems.extend(
        f"{s} written in a round that must not reach it" for s in sorted(rules.never & set(states))
    )
    return problems


def acked_problems(
    pair: LocalPair, db: str, tables: dict[str, str], expected: dict[tuple[str, int], str | None]
) -> list[str]:
    """Where the source's tables (``tables``: the writer's table -> the source table now holding
    it) do not hold what the acknowledged writes left (plain PyMySQL)."""
    problems: list[str] = []
    for table, source_table in tables.items():
        mine = {i: c for (t, i), c in expected.items() if t == table}
        if not mine:
            continue
        rows = query(
            pair.source.socket, f"SELECT id, c FROM `{db}`.`{source_table}` WHERE id >= {ACKED_ID_BASE}"
        )
        have = {int(r[0]): str(r[1]) for r in rows}
        for row_id, c in sorted(mine.items()):
            if c is None and row_id in have:
                problems.append(
                    f"{table} id {row_id}: deleted on the target (acknowledged), present on the source"
                )
            elif c is not None and have.get(row_id) != c:
                problems.append(
                    f"{table} id {row_id}: acknowledged {c!r} on the target, source has {have.get(row_id)!r}"
                )
    return problems


@dataclass(frozen=True)
class RoundMarks:
    """Binlog positions taken during a round: before its schema existed (source, target) and where
    its source load began."""

    since: BinlogPos
    load_from: BinlogPos
    target_since: BinlogPos


def diff_tables(
    drill: Drill,
    pairs: list[tuple[str, tuple[str, str], tuple[str, str]]],
    failures: list[str],
    when: str = "",
) -> tuple[list[dict[str, Any]], int, dict[str, str] | None]:
    """The ordered dump diff (and pt-table-sync, when installed) of each (table, source, target):
    (per-table results, source rows, pt-table-sync output per table or None)."""
    diffs: list[dict[str, Any]] = []
    rows = 0
    suffix = f" {when}" if when else ""
    for table, src, dst in pairs:
        try:
            d = dump_diff(drill.pair, src, dst)
        except pymysql.err.MySQLError as exc:
            failures.append(f"dump diff of {table}{suffix}: {exc}")
            diffs.append({"table": table, "error": str(exc)})
            continue
        rows += d.source_rows
        diffs.append(
            {
                "table": table,
                "compared": d.table,
                "source_rows": d.source_rows,
                "target_rows": d.target_rows,
                "missing": d.missing,
                "extra": d.extra,
                "different": d.different,
                "examples": d.examples,
            }
        )
        if not d.equal:
            failures.append(
                f"dump diff {d.table}{suffix}: {d.missing} missing, {d.extra} extra, {d.different} different "
                f"({'; '.join(d.examples[:3])})"
            )
    pt: dict[str, str] | None = None
    if drill.pt_table_sync is not None:
        pt = {}
        for table, src, dst in pairs:
            try:
                pt[table] = pt_table_sync(drill.pt_table_sync, drill.pair, src, dst)
            except (subprocess.TimeoutExpired, OSError) as exc:
                pt[table] = f"could not run: {exc}"
            if pt[table]:
                failures.append(f"pt-table-sync {table}{suffix}: {pt[table][:600]}")
    return diffs, rows, pt


def forward_data_checks(
    drill: Drill,
    config: Path,
    schemas: tuple[str, str],
    tables: list[str],
    failures: list[str],
    when: str = "",
) -> dict[str, Any]:
    """The forward move's data checks: ``tablemover verify``, and the ordered dump diff (and
    pt-table-sync) of every renamed source table with its target table."""
    db, dst = schemas
    out: dict[str, Any] = {}
    rc, text = tablemover_verify(config)
    out["verify"] = {"rc": rc, "output": text[-2000:], "when": when or "at the end"}
    if rc != 0:
        failures.append(
            f"tablemover verify{' ' + when if when else ''} exited {rc}: "
            + " | ".join(text.splitlines())[-600:]
        )
    pairs = [(t, (db, f"_{t}_moved"), (dst, t)) for t in tables]
    out["dump_diff"], out["rows"], pt = diff_tables(drill, pairs, failures, when)
    if pt is not None:
        out["pt_table_sync"] = pt
    return out


def hook_problems(name: str, attempts: list[int], fired: list[int], state: str) -> list[str]:
    """What is wrong with a hook's attempt numbers (the ones it appended) against the one ``state``
    recorded (``fired``): it ran, increasing, and not again after ``state`` was written."""
    if not attempts:
        return [f"the {name} hook never ran"]
    if attempts != sorted(set(attempts)):
        return [f"{name} hook attempt numbers not increasing: {attempts}"]
    if fired and attempts[-1] != fired[-1]:
        return [
            f"the {name} hook ran as attempt {attempts[-1]} but {state} records attempt {fired[-1]} "
            f"(it ran again after {state}, or its success was not recorded)"
        ]
    return []
