"""`pip install .` into a fresh virtual environment yields a working `tablemover` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_into_fresh_venv_gives_tablemover_help(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-3000:]
    tablemover = str(venv / "bin" / "tablemover")
    top = subprocess.run([tablemover, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    for command in ("run", "check", "status", "verify"):
        assert command in top.stdout
    assert "exit codes" in top.stdout
    run_help = subprocess.run([tablemover, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert run_help.returncode == 0 and "[move]" in run_help.stdout, run_help.stdout
    bad = subprocess.run(
        [tablemover, "run", "-c", str(tmp_path / "missing.toml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "cannot read config file" in bad.stderr and "Traceback" not in bad.stderr
