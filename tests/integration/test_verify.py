"""`tablemover verify` finds and names every kind of single-row difference, and passes equal pairs."""

from __future__ import annotations

import json

from conftest import MoveEnv


def test_verify_passes_equal_tables_and_names_each_injected_difference(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2))",
        "INSERT INTO a SELECT seq, CONCAT('v', seq), seq / 100 FROM seq_1_to_5000",
        "CREATE TABLE c (x INT NOT NULL, y VARCHAR(8) NOT NULL, z INT, PRIMARY KEY (x, y))",
        "INSERT INTO c SELECT seq % 10, CONCAT('k', seq), seq FROM seq_1_to_3000",
    )
    cfg = str(move.config(["a", "c"]))
    assert move.cli("run", "-c", cfg).returncode == 0
    equal = move.cli("verify", "-c", cfg)
    assert equal.returncode == 0 and "verify: all tables equal" in equal.stdout, equal.stdout + equal.stderr
    assert "from _a_moved" in equal.stdout  # after cutover the renamed source tables are compared

    move.tgt(
        "UPDATE a SET v = 'tampered' WHERE id = 10",
        "DELETE FROM a WHERE id = 4321",
        "INSERT INTO a VALUES (99999, 'extra', 1)",
        "UPDATE c SET z = NULL WHERE x = 3 AND y = 'k13'",  # a NULL vs a value differs too
    )
    found = move.cli("verify", "--json", "--rechecks", "0", "-c", cfg)
    assert found.returncode == 4, found.stdout + found.stderr  # 4 = the tables differ
    report = json.loads(found.stdout)
    assert report["equal"] is False
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["a"]["different"] == [[10]]
    assert tables["a"]["missing_on_target"] == [[4321]]
    assert tables["a"]["extra_on_target"] == [[99999]]
    assert tables["c"]["different"] == [[3, "k13"]] and tables["c"]["equal"] is False
    text = move.cli("verify", "--rechecks", "0", "-c", cfg)
    assert "different: (10,)" in text.stdout and "missing on target: (4321,)" in text.stdout
    assert "extra on target: (99999,)" in text.stdout and "verify: differences found" in text.stdout


def test_verify_before_cutover_compares_the_live_source_tables(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO a SELECT seq, 'x' FROM seq_1_to_3000",
    )
    cfg = str(move.config(["a"]))
    assert move.cli("run", "--stop-before-cutover", "-c", cfg).returncode == 0
    result = move.cli("verify", "-c", cfg)
    assert result.returncode == 0 and "3000 source rows from a," in result.stdout, result.stdout
