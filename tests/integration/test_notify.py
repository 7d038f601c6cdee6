"""The daemon speaks systemd's notify protocol: READY after preflight, STATUS, WATCHDOG pings."""

from __future__ import annotations

import socket
from pathlib import Path

from conftest import MoveEnv
from support import transitions


def test_notify_socket_receives_ready_status_and_watchdog(move: MoveEnv, tmp_path: Path) -> None:
    move.src(
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO a SELECT seq, 'x' FROM seq_1_to_20000",
    )
    cfg = move.config(["a"], move={"chunk_size": 100, "adaptive_chunk_size": False})
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(0.2)
    try:
        proc = move.popen("run", "-c", str(cfg), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        messages: list[str] = []
        while proc.poll() is None or len(messages) < 1:
            try:
                messages.append(listener.recv(4096).decode())
            except TimeoutError:
                if proc.poll() is not None:
                    break
        assert proc.wait(timeout=60) == 0
    finally:
        listener.close()
    assert transitions(move)[-1] == "DONE"
    ready = [i for i, m in enumerate(messages) if "READY=1" in m]
    assert ready, messages
    entering = [i for i, m in enumerate(messages) if "STATUS=entering" in m]
    assert entering and ready[0] < entering[0], "READY must come after preflight, before any state change"
    assert any("STATUS=entering RENAMED" in m for m in messages)
    assert sum("WATCHDOG=1" in m for m in messages) >= 2, messages
