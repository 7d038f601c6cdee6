"""The documented install works: `make dist` builds a wheel, `deploy/install.sh` puts it into a fresh
virtual environment at /opt/tablemover (here under a temporary root), and systemd accepts the unit
whose ExecStart points there.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tablemover.config import load_config
from test_deploy import BINARY, assert_verified, verify_unit_under_root

ROOT = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_wheel_installs_as_documented_and_the_unit_verifies(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        ["make", "-C", str(ROOT), "dist", f"DIST={dist}"], capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = list(dist.glob("tablemover-*-py3-none-any.whl"))
    assert len(wheels) == 1, build.stdout

    root = tmp_path / "root"
    install = [
        str(ROOT / "deploy/install.sh"),
        "--root",
        str(root),
        "--wheel",
        str(wheels[0]),
        "--move",
        "orders",
    ]
    # A clean environment: a PYTHONPATH pointing at a source tree would shadow the installed wheel.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    first = subprocess.run(install, capture_output=True, text=True, timeout=600, env=clean)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    # A fresh venv at the documented place, with a working command.
    tablemover = root / BINARY.lstrip("/")
    assert (root / "opt/tablemover/pyvenv.cfg").exists()
    top = subprocess.run([str(tablemover), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    for command in ("run", "check", "status", "verify", "demo"):
        assert command in top.stdout
    assert "exit codes" in top.stdout
    run_help = subprocess.run([str(tablemover), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert run_help.returncode == 0 and "[move]" in run_help.stdout, run_help.stdout
    bad = subprocess.run(
        [str(tablemover), "run", "-c", str(tmp_path / "missing.toml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "cannot read config file" in bad.stderr and "Traceback" not in bad.stderr
    assert os.readlink(root / "usr/local/bin/tablemover") == BINARY

    # Config, password files and hooks with the documented modes (owners are set on a real system).
    etc = root / "etc/tablemover"
    assert mode(etc) == 0o750
    config = load_config(etc / "orders.toml", env={})
    assert config.move.name == "orders" and config.move.hooks_dir == "/etc/tablemover/hooks/orders"
    assert config.source.password_file == "/etc/tablemover/orders.source.pass"
    for side in ("source", "target"):
        password = etc / f"orders.{side}.pass"
        assert password.is_file() and password.read_text() == "" and mode(password) == 0o600
    assert mode(etc / "orders.toml") == 0o640 and mode(etc / "hooks/orders") == 0o755

    # systemd accepts the installed unit with the real program at its ExecStart.
    assert_verified(verify_unit_under_root(root))

    # Running it again (an upgrade) changes nothing an operator wrote.
    edited = (etc / "orders.toml").read_text().replace('database = "app"', 'database = "shop"')
    (etc / "orders.toml").write_text(edited)
    (etc / "orders.source.pass").write_text("secret\n")
    again = subprocess.run(install, capture_output=True, text=True, timeout=600, env=clean)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "orders.toml exists: left as it is" in again.stdout
    assert "-m venv" not in again.stdout, "the existing venv was recreated"
    assert (etc / "orders.toml").read_text() == edited
    assert (etc / "orders.source.pass").read_text() == "secret\n"
