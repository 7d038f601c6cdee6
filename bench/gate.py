"""The live checksum gate alone: seconds over a sbtest table, by workers, before and after.

    .venv/bin/python -m bench.gate [--rows N] [--workers 1,2,4] [--rounds R] [--before SRC]

Starts a server pair, fills the same deterministic sbtest table on both (nothing writes during the
measurement, so the apply is never waited for: what is timed is the gate's own reading and
summing), then runs :func:`tablemover.verify.verify_live` in a fresh process per measurement, each
with ``--workers`` workers. ``--before SRC`` (a ``src`` directory of another checkout, e.g. main's)
also times that checkout's gate on the same servers, with its own default workers. Prints one JSON
object; each figure is the best of ``--rounds`` (interleaved), with the median beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA_GRANT = "bench\\_%"
DB = "bench_gate"


def measure(config_path: str, workers: int | None) -> dict[str, float]:
    """Time one verify_live run (in this process, whichever tablemover is importable)."""
    import anyio

    from tablemover import gtid, verify
    from tablemover.config import load_config
    from tablemover.flavor import Flavor

    config = load_config(Path(config_path), env={})

    async def caught_up(position: gtid.GtidPosition) -> None:
        return None  # nothing writes: the target holds every source transaction already

    async def run() -> dict[str, float]:
        started = time.monotonic()
        if workers is None:
            report = await verify.verify_live(config, Flavor.MARIADB, caught_up)
        else:
            report = await verify.verify_live(config, Flavor.MARIADB, caught_up, workers)
        seconds = time.monotonic() - started
        rows = sum(t.source_rows for t in report.tables)
        assert report.equal, report
        return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}

    return anyio.run(run)


def child(src: Path, config_path: Path, workers: int | None) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter that imports tablemover from ``src``."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    args = [sys.executable, "-m", "bench.gate", "--measure", str(config_path)]
    if workers is not None:
        args += ["--workers", str(workers)]
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Start servers, fill them, time the gate; print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="src directory of the checkout to compare with")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        workers = int(args.workers) if args.workers.isdigit() else None
        print(json.dumps(measure(args.measure, workers)))
        return

    from bench.common import create_filled_table
    from tablemover.local.mariadb import grant_mover, pair_config, start_pair

    root = Path(tempfile.mkdtemp(prefix="tablemover-bench-gate-"))
    pair = start_pair(row_metadata="FULL", root=root / "servers")
    try:
        grant_mover(pair, SCHEMA_GRANT)
        create_filled_table(pair.source, DB, args.rows)
        create_filled_table(pair.target, DB, args.rows)
        config_path = root / "move.toml"
        move = {"name": "gate", "database": DB, "tables": ["sbtest1"]}
        config_path.write_text(pair_config(pair, root, move))
        results: dict[str, object] = {"rows": args.rows, "cpus": os.cpu_count()}
        runs: list[tuple[str, Path, int | None]] = []
        if args.before is not None:
            runs.append(("before", args.before.resolve(), None))
        runs += [(f"workers={n}", REPO / "src", int(n)) for n in args.workers.split(",")]
        # Rounds interleave the variants, so that load from elsewhere on the machine falls on each.
        seen: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
        for _ in range(args.rounds):
            for label, src, workers in runs:
                seen[label].append(child(src, config_path, workers))
        for label, figures in seen.items():
            times = sorted(f["seconds"] for f in figures)
            best = min(figures, key=lambda r: r["seconds"])
            best["median_seconds"] = times[len(times) // 2]
            best["seconds_per_million_rows"] = round(best["seconds"] * 1_000_000 / best["rows"], 2)
            results[label] = best
            print(label, best, file=sys.stderr)
        print(json.dumps(results, indent=2))
    finally:
        pair.cleanup()


if __name__ == "__main__":
    main()
