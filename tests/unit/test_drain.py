"""The drain decision: has the applied position reached the position read right after the RENAME?

The daemon drains while ``not gtid.covers(applied, drain)``; these are the cases that decide when a
cutover's write outage ends, on both flavours.
"""

from __future__ import annotations

import pytest

from tablemover import gtid
from tablemover.cutover import SourceTables, judge
from tablemover.flavor import Flavor

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4e11fa47-71ca-11e1-9e33-c80aa9429562"


def drained(flavor: Flavor, applied: str, drain: str) -> bool:
    return gtid.covers(gtid.parse_position(flavor, applied), gtid.parse_position(flavor, drain))


@pytest.mark.parametrize(
    ("applied", "drain", "done"),
    [
        ("0-1-100", "0-1-100", True),  # the RENAME itself was the last transaction
        ("0-1-99", "0-1-100", False),  # the RENAME's own GTID not applied yet
        ("0-1-105", "0-1-100", True),  # later transactions (other tables) applied too
        ("0-1-100,1-5-7", "0-1-100,1-5-8", False),  # one domain behind
        ("0-1-100,1-5-9", "0-1-100,1-5-8", True),
        ("0-1-100", "0-1-100,2-3-1", False),  # a domain the applier has never seen
        ("0-2-100", "0-1-100", True),  # failover changed server_id; the domain's seq decides
        ("", "", True),
        ("0-1-5", "", True),
        ("", "0-1-5", False),
    ],
)
def test_mariadb_drain_decision(applied: str, drain: str, done: bool) -> None:
    assert drained(Flavor.MARIADB, applied, drain) is done


@pytest.mark.parametrize(
    ("applied", "drain", "done"),
    [
        (f"{U1}:1-100", f"{U1}:1-100", True),
        (f"{U1}:1-99", f"{U1}:1-100", False),
        (f"{U1}:1-50:52-100", f"{U1}:1-100", False),  # a gap: transaction 51 not applied
        (f"{U1}:1-100,{U2}:1-7", f"{U1}:1-100,{U2}:1-5", True),
        (f"{U1}:1-100", f"{U1}:1-100,{U2}:1-5", False),  # several server UUIDs
        (f"{U1}:1-100,{U2}:1-4", f"{U1}:1-100,{U2}:1-5", False),
        (f"{U1}:1-100:tag:1-3", f"{U1}:1-100:tag:1-3", True),  # tagged GTIDs (8.4)
        (f"{U1}:1-100", f"{U1}:1-100:tag:1", False),
    ],
)
def test_mysql_drain_decision(applied: str, drain: str, done: bool) -> None:
    assert drained(Flavor.MYSQL, applied, drain) is done


def test_mixed_flavours_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        gtid.covers(
            gtid.parse_position(Flavor.MARIADB, "0-1-1"), gtid.parse_position(Flavor.MYSQL, f"{U1}:1")
        )


@pytest.mark.parametrize(
    ("found", "verdict"),
    [
        ({"a": (True, False), "b": (True, False)}, SourceTables.ORIGINAL),
        ({"a": (False, True), "b": (False, True)}, SourceTables.RENAMED),
        ({"a": (True, True), "b": (False, True)}, SourceTables.AMBIGUOUS),  # table recreated
        ({"a": (False, False), "b": (False, True)}, SourceTables.AMBIGUOUS),  # table dropped
        ({"a": (True, False), "b": (False, True)}, SourceTables.AMBIGUOUS),  # half renamed (impossible
        # with one atomic RENAME, so somebody did it by hand)
    ],
)
def test_cutover_started_inspection_verdict(
    found: dict[str, tuple[bool, bool]], verdict: SourceTables
) -> None:
    assert judge(found) is verdict
