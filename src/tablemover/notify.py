"""systemd's notify protocol, spoken directly (no libsystemd): READY, STATUS, WATCHDOG, STOPPING.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (and ``WATCHDOG_USEC`` with ``WatchdogSec=``);
outside systemd both are absent and every call here is a no-op.
"""

from __future__ import annotations

import os
import socket

import anyio


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; silent when not run by systemd."""

    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract-namespace socket.
        self._address = "\0" + path[1:] if path.startswith("@") else path
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_s = int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 else 0.0

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """Send ``KEY=value`` lines, e.g. ``send(READY="1", STATUS="copying")``."""
        if not self._address:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message, self._address)
            except OSError:
                return  # systemd went away; nothing useful to do about it here

    async def watchdog(self) -> None:
        """Ping at half the watchdog interval from the event loop, so a stuck loop gets restarted."""
        if not self.watchdog_s or not self._address:
            return
        while True:
            self.send(WATCHDOG="1")
            await anyio.sleep(self.watchdog_s / 2)
