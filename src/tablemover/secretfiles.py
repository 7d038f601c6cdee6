"""Who else can read or change a file that holds a secret (a password file, the config).

``check`` and ``run`` warn when such a file is readable by others, or by a group other than the
daemon's (the operators' socket group must not read the database passwords), and refuse one that
others may write: whoever can change it can point the move, or its hooks, anywhere.
"""

from __future__ import annotations

import grp
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Exposure:
    """What is wrong with one file: ``refusals`` stop the run (exit 2), ``warnings`` are logged."""

    warnings: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _others_reach(path: Path) -> bool:
    """Whether every directory above ``path`` lets other users through (o+x).

    A file in a 0700 directory (a temp dir, /root) is out of their reach whatever its own mode.
    """
    for parent in path.resolve().parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def exposure(path: str | Path, what: str, service_gid: int | None = None) -> Exposure:
    """Check ``path`` (``what`` names it in messages); a missing file is left to its reader."""
    found = Exposure()
    try:
        info = Path(path).stat()
    except OSError:
        return found
    gid = os.getegid() if service_gid is None else service_gid
    mode = info.st_mode
    if not _others_reach(Path(path)):
        mode &= ~(stat.S_IROTH | stat.S_IWOTH)
    if mode & stat.S_IWOTH:
        found.refusals.append(
            f"{what} {path} is writable by every user (mode {stat.filemode(mode)}): anyone could change "
            f"what the move connects to or runs. Fix: chmod o-w {path} (0640, owner root, group of the "
            "service)."
        )
    if mode & stat.S_IROTH:
        found.warnings.append(
            f"{what} {path} is readable by every user (mode {stat.filemode(mode)}), and it holds a "
            f"password. Fix: chmod o-r {path}"
        )
    if mode & stat.S_IRGRP and info.st_gid != gid:
        found.warnings.append(
            f"{what} {path} is readable by group {_group_name(info.st_gid)!r}, not the daemon's own "
            f"group {_group_name(gid)!r}: its members read the password. Fix: chgrp "
            f"{_group_name(gid)} {path}, or chmod g-r"
        )
    return found
