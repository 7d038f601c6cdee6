"""`tablemover demo` runs the whole mission on its own throwaway servers and shows it as it happens.

Without a terminal it prints readable lines; on a terminal (a pty here) it draws progress bars per
table. Either way: each state of the cutover as it is entered, where the restart resumed, the outage
and the summary.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

STATES = ("PREPARED", "COPYING", "CUTOVER_STARTED", "RENAMED", "DRAINED", "HOOK_FIRED", "DONE")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def assert_tells_the_whole_story(out: str) -> None:
    """States in diagram order, the resume point, the outage, then the summary."""
    positions = []
    for state in STATES:
        found = re.search(rf"s  {state} ", out)
        assert found, f"state {state} not shown:\n{out[-4000:]}"
        positions.append(found.start())
    assert positions == sorted(positions), f"states out of order:\n{out[-4000:]}"
    assert re.search(r"SIGKILLed the move in \w+ at [\d,]+ rows copied", out), out[-4000:]
    assert "resumed from the checkpoint in" in out, out[-4000:]
    assert re.search(r"outage \d+ ms: writes to the moved tables failed", out), out[-4000:]
    assert out.index("outage ") < out.index("tablemover demo summary")
    assert "verify               all tables equal" in out
    assert "writes stopped by the cutover: yes" in out
    assert "resumed after kill   yes" in out
    assert "servers stopped and removed" in out


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
    assert_tells_the_whole_story(out)
    # The target's replica (issue #27): its stopped SQL thread held the copy, the demo started it,
    # and it ends equal to the target.
    held = re.search(r"copy held: target replica 127\.0\.0\.1:\d+: SQL thread No", out)
    assert held, out[-4000:]
    assert out.index("started the replica's SQL thread") > held.start()
    assert out.index("started the replica's SQL thread") < out.index("s  CUTOVER_STARTED ")
    assert "target replica equal to the target: yes" in out
    assert "\x1b" not in out, "no escape codes without a terminal"
    assert "control request failed" not in out, "status asked before the daemon could answer"


def run_on_a_terminal(args: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``tablemover ARGS`` on a 160x45 pty (the reporter's tmux) and return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    for hint in ("COLUMNS", "LINES", "NO_COLOR", "JOURNAL_STREAM"):
        env.pop(hint, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tablemover", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()  # past the deadline: the demo's own cleanup is not waited for
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_demo_on_a_terminal_draws_bars_states_outage_and_summary() -> None:
    started = time.monotonic()
    code, raw = run_on_a_terminal(["demo", "--rows", "20000"], timeout_s=120)
    screen = ANSI.sub("", raw).replace("\r", "\n")
    assert code == 0, screen[-4000:]
    assert "\x1b[" in raw, "colour and cursor control expected on a terminal"
    assert "rows/s" in screen and "━" in screen, f"no progress bars:\n{screen[-4000:]}"
    for table in ("customers", "orders", "order_items"):
        assert re.search(rf"  {table}\s+━", screen), f"no bar for {table}"
    if screen.index("SIGKILLed") < screen.index("copy complete and caught up"):
        # Killed mid-copy (the usual case): after the restart the bars say where each table resumed.
        assert re.search(r"resumed at [\d,]+|copied before the kill", screen), screen[-4000:]
    assert_tells_the_whole_story(screen)
    assert '"msg"' not in screen, "the daemon's JSON lines are the demo's input, not its output"
    assert time.monotonic() - started < 90


def test_demo_with_a_rollback_window_rolls_back_with_nothing_lost() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "tablemover", "demo", "--rows", "20000", "--rollback"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    window_states = ("HOOK_FIRED", "WINDOW_OPEN", "ROLLBACK_STARTED", "ROLLBACK_RENAMED", "ROLLBACK_DRAINED")
    positions = [out.index(f"s  {state} ") for state in (*window_states, "ROLLED_BACK")]
    assert positions == sorted(positions), out[-4000:]
    assert "the application now writes to the target" in out
    assert re.search(r"rollback outage \d+ ms: writes to the target's tables failed", out), out[-4000:]
    assert "vs target (rolled-back names): equal" in out
    found = re.search(
        r"source equals the target: every table, after (\d+) app transactions on the target", out
    )
    assert found and int(found.group(1)) > 0, out[-3000:]


def test_demo_reading_from_a_replica_of_the_source_says_where_rows_were_read() -> None:
    """``demo --replica`` (issue #24): the move reads from a GTID replica of the demo's source; the
    demo says so from status (``reading_from``) and userstat, and that the RENAME ran on the primary."""
    demo = subprocess.run(
        [sys.executable, "-m", "tablemover", "demo", "--rows", "20000", "--replica"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert_tells_the_whole_story(out)
    assert re.search(r"reading rows and the binlog from replica 127\.0\.0\.1:\d+", out), out[-4000:]
    assert re.search(r"rows read from\s+replica 127\.0\.0\.1:\d+", out), out[-4000:]
    found = re.search(r"rows read \(userstat\) primary ([\d,]+), replica ([\d,]+)", out)
    assert found, out[-4000:]
    primary, replica = (int(g.replace(",", "")) for g in found.groups())
    # The copy read every seeded row on the replica; the primary read only for the application's
    # writes, which the replica's SQL thread reads again to apply them.
    assert replica >= 20_000 and replica > primary, out[-4000:]
    assert re.search(r"the RENAME ran on the primary 127\.0\.0\.1:\d+", out), out[-4000:]
    assert "the replica executed it by replication: yes" in out
