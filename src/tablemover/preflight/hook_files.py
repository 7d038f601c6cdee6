"""Check: hooks are code the daemon runs, so only root or the service user may change them.

A hook directory or file that anyone else can write (mode o+w, or owned by another user) lets that
user run code as the daemon at the cutover, with the move's facts in its environment: refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path

from tablemover.hooks import HOOK_NAMES, find_hooks
from tablemover.preflight import Phase, PreflightContext, check


def _problem(path: Path, allowed_owners: Collection[int]) -> str | None:
    info = path.stat()
    what = "directory" if path.is_dir() else "hook"
    if info.st_mode & stat.S_IWOTH:
        return (
            f"{what} {path} is writable by every user (mode {stat.filemode(info.st_mode)}), so anyone "
            f"could make the daemon run their code. Fix: chmod o-w {path}"
        )
    if info.st_uid not in allowed_owners:
        return (
            f"{what} {path} belongs to uid {info.st_uid}, neither root nor the user the daemon runs as "
            f"(uid {os.geteuid()}), so that user could make the daemon run their code. "
            f"Fix: chown root {path} (and keep it writable by root only)"
        )
    return None


def hook_file_problems(hooks_dir: str, allowed_owners: Collection[int]) -> list[str]:
    """Problems with the ownership or mode of ``hooks_dir`` and every hook in it (pure over the fs)."""
    if not hooks_dir or not Path(hooks_dir).is_dir():
        return []
    paths = [Path(hooks_dir), *sorted({p for name in HOOK_NAMES for p in find_hooks(hooks_dir, name)})]
    return [problem for path in paths if (problem := _problem(path, allowed_owners))]


@check(Phase.SERVERS, "hook_files")
async def hook_files(ctx: PreflightContext) -> list[str]:
    """Refuse hooks (or their directory) that another user could change."""
    return hook_file_problems(ctx.config.move.hooks_dir, {0, os.geteuid()})
