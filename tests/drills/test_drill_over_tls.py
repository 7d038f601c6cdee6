"""Issue #22's acceptance: a move with ``tls_mode = "verify_identity"`` against servers with
``require_secure_transport=ON`` runs end to end with the drill's checks. One round of the crash
drill itself with ``--tls``: the move under sysbench writes, SIGKILLed in a cutover state and
restarted, then verify, the ordered dump diff, one RENAME in the binlog, the state graph and the
hook. The servers refuse the move user's connections that are not TLS with the client certificate
(REQUIRE X509), so a passing round had every connection encrypted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_drill_round_over_verified_tls(tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drill.run",
            "--tls",
            "--rounds",
            "1",
            "--rows",
            "5000",
            "--window-every",
            "0",
            "--seed",
            "22",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["tls"].startswith("verify_identity, require_secure_transport=ON"), report["tls"]
    (round_,) = report["rounds"]
    assert round_["result"] == "PASS", round_
    assert round_["kill_points"].startswith("state."), round_  # a kill in a cutover state
    assert round_["restarts"] >= 1, round_
