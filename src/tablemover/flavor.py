"""Server flavour and version, detected once per connection and passed around as a value."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Flavor(enum.Enum):
    """Which server family we talk to; GTID syntax and several statements differ between them."""

    MARIADB = "mariadb"
    MYSQL = "mysql"


@dataclass(frozen=True)
class ServerVersion:
    """A parsed `SELECT VERSION()` answer."""

    flavor: Flavor
    major: int
    minor: int
    patch: int
    raw: str

    def __str__(self) -> str:
        return f"{self.flavor.value} {self.major}.{self.minor}.{self.patch}"


_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


def parse_version(version: str) -> ServerVersion:
    """Parse `SELECT VERSION()` output, e.g. ``10.11.19-MariaDB-0+deb12u1`` or ``8.4.3``."""
    text = version.strip()
    # MariaDB 10.x used to report a "5.5.5-" prefix over the wire to old clients.
    if text.startswith("5.5.5-"):
        text = text[len("5.5.5-") :]
    match = _VERSION_RE.match(text)
    if match is None:
        raise ValueError(f"unrecognised server version string {version!r}")
    flavor = Flavor.MARIADB if "mariadb" in text.lower() else Flavor.MYSQL
    major, minor, patch = (int(g) for g in match.groups())
    return ServerVersion(flavor, major, minor, patch, version)
