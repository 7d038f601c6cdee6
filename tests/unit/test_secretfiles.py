"""Who else can read or change a password file or the config."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tablemover.secretfiles import exposure


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A directory others can reach (pytest's own lives under a 0700 one, out of their reach)."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def secret(tmp_path: Path, mode: int, parent_mode: int = 0o755) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    path = directory / "source.pass"
    path.write_text("s3cret\n")
    path.chmod(mode)
    directory.chmod(parent_mode)
    tmp_path.chmod(0o755)
    return path


def test_a_private_file_is_fine(tmp_path: Path) -> None:
    found = exposure(secret(tmp_path, 0o640), "password_file", service_gid=os.getegid())
    assert found.warnings == [] and found.refusals == []


def test_readable_by_others_is_a_warning(tmp_path: Path) -> None:
    found = exposure(secret(tmp_path, 0o644), "password_file", service_gid=os.getegid())
    assert found.refusals == [] and len(found.warnings) == 1 and "chmod o-r" in found.warnings[0]


def test_writable_by_others_is_refused(tmp_path: Path) -> None:
    found = exposure(secret(tmp_path, 0o646), "config file", service_gid=os.getegid())
    assert len(found.refusals) == 1 and "chmod o-w" in found.refusals[0]


def test_readable_by_another_group_is_a_warning(tmp_path: Path) -> None:
    found = exposure(secret(tmp_path, 0o640), "password_file", service_gid=os.getegid() + 4242)
    assert len(found.warnings) == 1 and "not the daemon's own group" in found.warnings[0]


def test_a_file_in_a_private_directory_is_out_of_others_reach(tmp_path: Path) -> None:
    found = exposure(secret(tmp_path, 0o666, parent_mode=0o700), "password_file", service_gid=os.getegid())
    assert found.warnings == [] and found.refusals == []


def test_a_missing_file_is_left_to_its_reader(tmp_path: Path) -> None:
    found = exposure(tmp_path / "absent", "password_file")
    assert found.warnings == [] and found.refusals == []


def test_run_and_check_refuse_a_config_others_may_change(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "move.toml"
    # Ports nothing listens on: the refusal must come before any connection is tried.
    servers = "".join(f'[{side}]\nhost = "127.0.0.1"\nport = 1\n' for side in ("source", "target"))
    cfg.write_text('[move]\nname = "m"\ndatabase = "app"\ntables = ["a"]\n' + servers)
    cfg.chmod(0o666)
    for command in ("check", "run"):
        result = subprocess.run(
            [sys.executable, "-m", "tablemover", command, "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result
        assert "writable by every user" in result.stderr and "Traceback" not in result.stderr, result.stderr
