"""The systemd unit, the example config and the install script that ship in deploy/."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from tablemover.config import load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# The documented layout (README: Installing as a service); the unit and install.sh must agree.
BINARY = "/opt/tablemover/bin/tablemover"
UNIT_PATH = "etc/systemd/system/tablemover@.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "tablemover@.service")
    return parser


def test_unit_declares_what_the_daemon_relies_on() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"] == f"{BINARY} run -c /etc/tablemover/%i.toml"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == ["2", "3"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["WatchdogSec"]) > 0 and int(service["TimeoutStopSec"]) > 10
    assert service["RuntimeDirectory"] == "tablemover" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and "/run/tablemover" in service["ReadWritePaths"]
    # The password files reach the daemon as credentials (config.credential_path), named as the
    # example config's password_file entries, so the files can stay root-only.
    text = (DEPLOY / "tablemover@.service").read_text()
    example = (DEPLOY / "move.example.toml").read_text()
    for side in ("source", "target"):
        assert f"LoadCredential=%i.{side}.pass:/etc/tablemover/%i.{side}.pass" in text
        assert f'password_file = "/etc/tablemover/orders.{side}.pass"' in example


def test_unit_lets_the_tablemover_group_reach_the_sockets_and_hooks_keep_state() -> None:
    service = unit()["Service"]
    # Sockets are created 0660 (control.py): the group may steer the move, others cannot reach it.
    assert service["User"] == "tablemover" and service["Group"] == "tablemover"
    assert service["RuntimeDirectoryMode"] == "0750"
    assert service["StateDirectory"] == "tablemover"
    text = (DEPLOY / "tablemover@.service").read_text()
    assert "systemctl edit tablemover@" in text and "PrivateTmp" in text, "sandbox not explained for hooks"


def test_example_config_is_valid_and_documents_every_key() -> None:
    config = load_config(DEPLOY / "move.example.toml", env={})
    assert config.socket_path == "/run/tablemover/orders.sock"
    assert config.source.password_file == "/etc/tablemover/orders.source.pass"
    assert config.target.password_file == "/etc/tablemover/orders.target.pass"
    text = (DEPLOY / "move.example.toml").read_text()
    for section in ("move", "source", "target", "throttle", "control"):
        model = type(getattr(config, section))
        for key in model.model_fields:
            if key == "password":
                continue  # shown as a comment next to password_file
            assert f"\n{key} = " in text, f"[{section}] {key} is not in the example"


def test_install_script_dry_run_names_every_step_with_its_modes(tmp_path: Path) -> None:
    wheel = tmp_path / "tablemover-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")  # never installed: --dry-run only prints
    root = tmp_path / "root"
    result = subprocess.run(
        [
            str(DEPLOY / "install.sh"),
            "--dry-run",
            "--root",
            str(root),
            "--wheel",
            str(wheel),
            "--move",
            "orders",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    expected = [
        f"python3 -m venv {root}/opt/tablemover",
        f"{root}/opt/tablemover/bin/pip install --quiet --upgrade {wheel}",
        f"ln -sfn {BINARY} {root}/usr/local/bin/tablemover",
        f"install -m 0644 {DEPLOY}/tablemover@.service {root}/{UNIT_PATH}",
        f"install -d -m 0750 {root}/etc/tablemover",
        f"install -m 0600 /dev/null {root}/etc/tablemover/orders.source.pass",
        f"install -m 0600 /dev/null {root}/etc/tablemover/orders.target.pass",
        f"install -d -m 0755 {root}/etc/tablemover/hooks/orders",
    ]
    for command in expected:
        assert command in commands, f"{command!r} not in:\n" + "\n".join(commands)
    assert not root.exists(), "--dry-run created files"


def test_install_script_dry_run_on_the_real_system_sets_owners(tmp_path: Path) -> None:
    wheel = tmp_path / "tablemover-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    result = subprocess.run(
        [str(DEPLOY / "install.sh"), "--dry-run", "--wheel", str(wheel), "--move", "orders"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "install -d -m 0750 -o root -g tablemover /etc/tablemover\n" in out
    assert f"install -m 0644 -o root -g root {DEPLOY}/tablemover@.service /etc/systemd/system/" in out
    if not Path("/etc/tablemover/orders.source.pass").exists():
        assert "install -m 0600 -o root -g root /dev/null /etc/tablemover/orders.source.pass" in out


def test_install_script_refuses_a_bad_move_name_and_a_missing_wheel(tmp_path: Path) -> None:
    script = str(DEPLOY / "install.sh")
    bad = subprocess.run(
        [script, "--dry-run", "--wheel", str(DEPLOY / "install.sh"), "--move", "Orders!"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "move name" in bad.stderr
    missing = subprocess.run(
        [script, "--dry-run", "--wheel", str(tmp_path / "nope.whl")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def systemd_analyze() -> str:
    """The systemd-analyze binary, or a loud skip where it is not installed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze not installed: the unit is only linted structurally"
        print(f"\n!!! {message}")
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    return analyze


def verify_unit_under_root(root: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --root=ROOT verify`` of the installed unit, as on a real Debian root.

    With --root, systemd-analyze resolves ExecStart= inside ROOT (so the documented
    /opt/tablemover/bin/tablemover must be there) and also looks for /bin/kill (ExecReload=) and
    the standard targets there: a real root has them, a test root gets copies from this machine.
    """
    analyze = systemd_analyze()
    unit_file = root / UNIT_PATH
    if not unit_file.exists():
        unit_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / "tablemover@.service", unit_file)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")  # Debian 12 is usr-merged
    kill = shutil.which("kill", path="/usr/bin:/bin")
    assert kill is not None
    shutil.copy(kill, root / "usr/bin/kill")
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for system_units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        for target in [*system_units.glob("*.target"), *system_units.glob("*.slice")]:
            if not (units / target.name).exists():
                shutil.copy(target, units / target.name, follow_symlinks=True)
    return subprocess.run(
        [analyze, f"--root={root}", "verify", str(root / "etc/systemd/system/tablemover@orders.service")],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_verified(result: subprocess.CompletedProcess[str]) -> None:
    """No error and no unknown or invalid setting in the unit."""
    out = result.stdout + result.stderr
    problems = [
        line
        for line in out.splitlines()
        if ("tablemover@" in line and "Unknown" in line) or "Invalid" in line or "Failed to parse" in line
    ]
    assert result.returncode == 0 and not problems, out


def test_systemd_analyze_verify_accepts_the_unit_at_the_documented_path(tmp_path: Path) -> None:
    systemd_analyze()
    root = tmp_path / "root"
    binary = root / BINARY.lstrip("/")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")  # tests/test_packaging.py puts the real one here
    binary.chmod(0o755)
    assert_verified(verify_unit_under_root(root))
    # The check has teeth: without the program at the documented path the unit is refused.
    binary.unlink()
    missing = verify_unit_under_root(root)
    assert missing.returncode != 0 and BINARY in missing.stdout + missing.stderr


def exposure(unit_file: Path) -> float:
    """The overall exposure ``systemd-analyze security`` gives ``unit_file`` (0 safe .. 10 exposed)."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((line for line in result.stdout.splitlines() if "Overall exposure level" in line), "")
    assert line, result.stdout + result.stderr
    return float(line.split(":", 1)[1].split()[0])


def test_the_units_sandbox_rates_ok_in_systemd_analyze_security(tmp_path: Path) -> None:
    unit_file = tmp_path / "tablemover@orders.service"
    shutil.copy(DEPLOY / "tablemover@.service", unit_file)
    assert exposure(unit_file) <= 3.0, "systemd-analyze security rates the unit above 3.0 (OK)"
    # The check has teeth: the same unit without its sandbox rates far worse.
    lines = (DEPLOY / "tablemover@.service").read_text().splitlines()
    bare = [
        line for line in lines if not line.startswith(("Protect", "Restrict", "Private", "System", "Capab"))
    ]
    unit_file.write_text("\n".join(bare) + "\n")
    assert exposure(unit_file) > 5.0
