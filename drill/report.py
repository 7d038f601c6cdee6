"""The drill's report: the table of rounds and the details of failed and unusual ones."""

from __future__ import annotations

from typing import Any


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "FAIL")


def _diffs_ok(diffs: list[dict[str, Any]]) -> bool:
    return bool(diffs) and all(d.get("missing") == d.get("extra") == d.get("different") == 0 for d in diffs)


def _renames(r: dict[str, Any]) -> str:
    """Source RENAMEs (away, + back in rollback rounds) / target RENAMEs in window rounds."""
    text = str(r.get("renames", "-"))
    if r.get("window") == "rollback":
        text += f"+{r.get('restores', '-')}"
    if "target_renames" in r:  # window rounds count the target's RENAMEs too
        text += f"/{r['target_renames']}"
    return text


def format_table(rounds: list[dict[str, Any]], with_pt: bool) -> str:
    """An aligned table of rounds."""
    header = ["round", "tables", "window", "kill point(s)", "restarts", "rows", "write txns", "verify"]
    header.append("dump diff")
    if with_pt:
        header.append("pt-sync")
    header += ["acked", "renames", "states", "hook", "s", "result"]
    lines = [header]
    for r in rounds:
        diff_ok = _diffs_ok(r.get("dump_diff", []))
        if r.get("window") == "rollback":
            diff_ok = diff_ok and _diffs_ok(r.get("rollback_dump_diff", []))
        row = [
            str(r["round"]),
            str(len(r["tables"])),
            (r.get("window") or "-")
            # A replica round's replica: identical to the target at the end (drill.rounds.replica).
            + (f" {_mark(r['replica_identical'])}" if "replica_identical" in r else ""),
            r.get("kill_points", ""),
            str(r.get("restarts", "")),
            f"{r.get('rows', 0):,}",
            f"{r.get('write_transactions', 0):,}",
            _mark(r.get("verify", {}).get("rc") == 0) if "verify" in r else "-",
            _mark(diff_ok),
        ]
        if with_pt:
            pt = {**r.get("pt_table_sync", {"": "?"}), **r.get("rollback_pt_table_sync", {})}
            row.append(_mark(not any(pt.values())))
        hook = ",".join(str(a) for a in r.get("hook_attempts", [])) or "-"
        if r.get("window") == "rollback":
            hook += " rb " + (",".join(str(a) for a in r.get("rollback_hook_attempts", [])) or "-")
        acked = "-"
        if "acked_writes" in r:
            acked = f"{r['acked_writes']:,} {_mark(r.get('acked_lost') == 0 and r['acked_writes'] > 0)}"
        row += [
            acked,
            _renames(r),
            _mark(not r.get("transition_problems", ["?"])),
            hook,
            f"{r.get('seconds', 0):.1f}",
            r["result"],
        ]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_details(rounds: list[dict[str, Any]]) -> str:
    """What went wrong (failures) or was unusual (warnings), round by round."""
    out = []
    for r in rounds:
        if not r.get("failures") and not r.get("warnings"):
            continue
        out.append(f"round {r['round']} ({r['result']}, kill {r.get('kill_points', '?')}):")
        out.extend(f"  FAILED: {f}" for f in r.get("failures", []))
        out.extend(f"  warning: {w}" for w in r.get("warnings", []))
        for i, run in enumerate(r.get("runs", []), 1):
            how = ", ".join(
                part
                for part in (
                    f"fault {run['fault']}" if run["fault"] else "",
                    f"kill after {run['kill_after_s']} s" if run["kill_after_s"] is not None else "",
                    "SIGKILLed by the drill" if run["killed_by_drill"] else "",
                )
                if part
            )
            out.append(
                f"  run {i}: {how or 'clean'}, exit {run['rc']}, {run['wall_s']} s, "
                f"states {' '.join(run['states']) or '-'}"
                + (f", errors: {'; '.join(run['errors'][:2])}" if run["errors"] else "")
            )
        if r.get("logs"):
            out.append(f"  logs: {r['logs']}")
    return "\n".join(out)
