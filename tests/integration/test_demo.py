"""`tablemover demo` runs the whole mission on its own throwaway servers and says so."""

from __future__ import annotations

import subprocess
import sys


def test_demo_moves_under_writes_survives_a_kill_and_verifies_equal() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "tablemover", "demo", "--rows", "30000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert "verify               all tables equal" in out
    assert "writes stopped by the cutover: yes" in out
    assert "resumed after kill   yes" in out
    assert "servers stopped and removed" in out
