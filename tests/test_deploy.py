"""The systemd unit and the example config that ship in deploy/."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tablemover.config import load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "tablemover@.service")
    return parser


def test_unit_declares_what_the_daemon_relies_on() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].endswith("tablemover run -c /etc/tablemover/%i.toml")
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["2", "3"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["WatchdogSec"]) > 0 and int(service["TimeoutStopSec"]) > 10
    assert service["RuntimeDirectory"] == "tablemover" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and "/run/tablemover" in service["ReadWritePaths"]


def test_example_config_is_valid_and_documents_every_key() -> None:
    config = load_config(DEPLOY / "move.example.toml", env={})
    assert config.socket_path == "/run/tablemover/orders.sock"
    text = (DEPLOY / "move.example.toml").read_text()
    for section in ("move", "source", "target", "throttle", "control"):
        model = type(getattr(config, section))
        for key in model.model_fields:
            if key == "password":
                continue  # shown as a comment next to password_file
            assert f"\n{key} = " in text, f"[{section}] {key} is not in the example"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze not installed: the unit is only linted structurally"
        print(f"\n!!! {message}")
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    binary = str(Path(sys.executable).parent / "tablemover")
    assert Path(binary).exists(), f"{binary} is missing: is the package installed in this venv?"
    # verify needs the ExecStart binary to exist; point it at the installed one.
    text = (DEPLOY / "tablemover@.service").read_text().replace("/usr/local/bin/tablemover", binary)
    (tmp_path / "tablemover@.service").write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "tablemover@orders.service")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if ("tablemover@" in line and "Unknown" in line) or "Invalid" in line or "Failed to parse" in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
