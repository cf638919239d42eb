"""Freeze a results directory into a small committed baseline for ``lorabench check``.

Only the records are kept (no adapters, predictions or logs), without their learning
curves, tracebacks and log tails, plus the leaderboard for people reading the diff.
``make baseline`` runs the smoke suite and calls this; rerun it deliberately, after a
change that is meant to move the numbers (training, data, a library upgrade), and
commit the result with the reason.

Usage: ``python -m lorabench.report.baseline RESULTS_DIR BASELINE_DIR``
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from lorabench.errors import UsageError
from lorabench.record import load_records

DROP = ("curves", "traceback", "log_tail")


def export_baseline(src: Path, dst: Path) -> int:
    """Replace ``dst`` with the slimmed records of ``src``; returns how many were written."""
    from lorabench.report.leaderboard import leaderboard

    records = load_records(Path(src))
    if not records:
        raise UsageError(f"{src}: no records to freeze")
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    for rec in records:
        slim = {k: v for k, v in rec.items() if k not in DROP}
        resolved = dict(slim.get("resolved") or {})
        resolved.pop("resolved_path", None)  # a path on the machine that made the baseline
        slim["resolved"] = resolved
        env = dict(slim.get("env") or {})
        env.pop("executable", None)  # likewise
        slim["env"] = env
        path = dst / "runs" / rec["run_id"] / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(slim, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    (dst / "leaderboard.md").write_text(leaderboard(records)[1], encoding="utf-8")
    return len(records)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m lorabench.report.baseline RESULTS_DIR BASELINE_DIR", file=sys.stderr)
        return 2
    try:
        n = export_baseline(Path(args[0]), Path(args[1]))
    except UsageError as exc:
        print(f"lorabench: error: {exc}", file=sys.stderr)
        return 2
    print(f"lorabench: {n} records -> {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
