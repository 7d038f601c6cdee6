"""Hooks get an allow-listed environment, die whole on timeout and cannot grow the daemon's memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tablemover.config import Config, parse_config
from tablemover.hooks import OUTPUT_TAIL_BYTES, inherited_environment, run_hooks


def config(hooks: Path, timeout_s: float = 30) -> Config:
    text = f"""\
[move]
name = "orders"
database = "app"
tables = ["orders"]
hooks_dir = "{hooks}"
hook_timeout_s = {timeout_s}
"""
    return parse_config(text, origin="move.toml", env={})


def hook(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_inherited_environment_keeps_only_what_a_script_needs() -> None:
    environ = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "STATE_DIRECTORY": "/var/lib/tablemover",
        "TABLEMOVER_TARGET__PASSWORD": "s3cret",
        "TABLEMOVER_SOURCE__PASSWORD_FILE": "/etc/tablemover/p",
        "MYSQL_PWD": "s3cret",
        "AWS_SECRET_ACCESS_KEY": "s3cret",
    }
    assert inherited_environment(environ) == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "STATE_DIRECTORY": "/var/lib/tablemover",
    }


async def test_a_hook_never_sees_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLEMOVER_TARGET__PASSWORD", "s3cret-from-env")
    monkeypatch.setenv("MYSQL_PWD", "s3cret-mysql")
    out = tmp_path / "env.txt"
    hook(tmp_path / "hooks", "on-success", f"env > {out}\n")
    result = await run_hooks(
        config(tmp_path / "hooks"), "success", "DRAINED", {"TABLEMOVER_DRAIN_GTID": "0-1-5"}
    )
    assert result.ok
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert "s3cret" not in out.read_text()
    assert seen["TABLEMOVER_MOVE_NAME"] == "orders" and seen["GH_OST_DRAIN_GTID"] == "0-1-5"
    assert seen["PATH"] == os.environ["PATH"]


async def test_a_timed_out_hook_leaves_no_process_behind(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A shell that starts a background child and a foreground one, and never ends by itself.
    hook(
        tmp_path / "hooks",
        "on-success",
        f"sleep 300 & echo $! >> {pids}\nsleep 300 & echo $! >> {pids}\nwait\n",
    )
    started = time.monotonic()
    result = await run_hooks(config(tmp_path / "hooks", timeout_s=1), "success", "DRAINED", {})
    assert not result.ok and "timed out" in result.detail
    assert time.monotonic() - started < 20
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    assert not any(alive(pid) for pid in children), children


async def test_a_finished_hook_keeps_only_the_tail_of_its_output(tmp_path: Path) -> None:
    hook(
        tmp_path / "hooks",
        "on-success",
        "head -c 1000000 /dev/zero | tr '\\0' 'x'; echo; echo the-end; exit 3\n",
    )
    result = await run_hooks(config(tmp_path / "hooks"), "success", "DRAINED", {})
    assert (
        not result.ok and result.detail.startswith("exit code 3: ") and result.detail.endswith("x\nthe-end")
    )


async def test_a_hook_that_leaves_a_child_holding_its_output_still_returns(tmp_path: Path) -> None:
    hook(tmp_path / "hooks", "on-success", "sleep 300 &\necho started\nexit 0\n")
    started = time.monotonic()
    result = await run_hooks(config(tmp_path / "hooks", timeout_s=60), "success", "DRAINED", {})
    assert result.ok and time.monotonic() - started < 20


MEASURE = """
import anyio, json, resource, sys
from tablemover.config import parse_config
from tablemover.hooks import run_hooks

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

async def main():
    cfg = parse_config(sys.argv[1], origin="move.toml", env={})
    await run_hooks(cfg, "status", "COPYING", {})  # a small hook first: everything imported and warm
    before = peak_kib()
    result = await run_hooks(cfg, "success", "DRAINED", {})
    print(json.dumps({"before": before, "after": peak_kib(), "ok": result.ok}))

anyio.run(main)
"""


def test_200_mb_of_hook_output_keeps_the_daemons_memory_flat(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hook(hooks, "on-status", "echo warm\n")
    hook(hooks, "on-success", "head -c 200000000 /dev/zero | tr '\\0' 'x'\n")
    text = f'[move]\nname = "orders"\ndatabase = "app"\ntables = ["orders"]\nhooks_dir = "{hooks}"\n'
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, text], capture_output=True, text=True, timeout=300, check=True
    )
    figures = json.loads(run.stdout)
    assert figures["ok"]
    grown_kib = figures["after"] - figures["before"]
    assert grown_kib < 10 * 1024, f"the daemon's peak RSS grew by {grown_kib} KiB reading 200 MB of output"
    assert OUTPUT_TAIL_BYTES <= 1024 * 1024
