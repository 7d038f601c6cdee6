"""A running daemon serves /status and /metrics on [control] http."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import MoveEnv
from support import transitions


def test_status_and_metrics_of_a_running_move(move: MoveEnv) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO a SELECT seq, 'x' FROM seq_1_to_5000",
    )
    cfg = str(move.config(["a"], move={"postpone_cutover": True}, control={"http": "127.0.0.1:0"}))
    proc = move.popen("run", "-c", cfg)
    log = move.workdir / "daemon.log"
    deadline = time.monotonic() + 60
    while "cutover postponed" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    port = int(re.search(r'"http status listening", "address": "[^"]*:(\d+)"', log.read_text()).group(1))  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    status = json.load(urllib.request.urlopen(f"{base}/status", timeout=10))
    assert status["state"] == "COPYING" and status["postponed"] is True
    table = status["tables"]["a"]
    assert {k: table[k] for k in ("rows_copied", "done")} == {"rows_copied": 5000, "done": True}
    assert table["rows_total"] > 0  # the optimizer's estimate: status keys are only ever added
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("tablemover_rows_copied", (("move", "t"), ("table", "a")))] == 5000
    states = {dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "tablemover_state"}
    assert states["COPYING"] == 1 and sum(states.values()) == 1
    assert move.cli("cutover", "-c", cfg).returncode == 0
    assert proc.wait(timeout=60) == 0
    assert transitions(move)[-1] == "DONE"
