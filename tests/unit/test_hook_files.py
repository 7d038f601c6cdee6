"""Preflight refuses hooks another user could change."""

from __future__ import annotations

import os
from pathlib import Path

from tablemover.preflight.hook_files import hook_file_problems

ME = {os.geteuid()}


def hooks(tmp_path: Path) -> Path:
    directory = tmp_path / "hooks"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    for name in ("on-success", "on-before-cutover-10-x", "README"):
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return directory


def test_hooks_owned_by_the_daemon_and_not_world_writable_pass(tmp_path: Path) -> None:
    assert hook_file_problems(str(hooks(tmp_path)), ME) == []
    assert hook_file_problems("", ME) == [] and hook_file_problems(str(tmp_path / "absent"), ME) == []


def test_a_world_writable_hook_is_refused(tmp_path: Path) -> None:
    directory = hooks(tmp_path)
    (directory / "on-success").chmod(0o757)
    (problem,) = hook_file_problems(str(directory), ME)
    assert "on-success is writable by every user" in problem and "chmod o-w" in problem


def test_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    directory = hooks(tmp_path)
    directory.chmod(0o777)
    (problem,) = hook_file_problems(str(directory), ME)
    assert problem.startswith(f"directory {directory} is writable by every user")


def test_hooks_owned_by_another_user_are_refused(tmp_path: Path) -> None:
    directory = hooks(tmp_path)
    problems = hook_file_problems(str(directory), {os.geteuid() + 1})
    # the directory and both hooks; a file that is not a hook (README) is not looked at
    assert len(problems) == 3 and all("chown root" in p for p in problems), problems


def test_a_file_that_is_not_executable_is_not_a_hook(tmp_path: Path) -> None:
    directory = hooks(tmp_path)
    (directory / "on-success").chmod(0o646)
    assert hook_file_problems(str(directory), ME) == []
