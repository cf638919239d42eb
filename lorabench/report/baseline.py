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
import os
import shutil
import sys
from pathlib import Path

from lorabench import atomic
from lorabench.errors import UsageError
from lorabench.record import load_records
from lorabench.record_data import Record
from lorabench.report.leaderboard import leaderboard
from lorabench.results_dir import MARKER, _check_out_path

DROP = ("curves", "traceback", "log_tail")


def _is_baseline(dst: Path) -> bool:
    """``dst`` holds only what :func:`export_baseline` writes (so replacing it loses nothing of anyone's)."""
    if dst.is_symlink() or not dst.is_dir():
        return False
    marker = dst / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("kind") == "baseline":
                return True
        except (OSError, ValueError, AttributeError):
            return False
    if {p.name for p in dst.iterdir()} - {"leaderboard.md", "runs", MARKER}:
        return False
    runs = dst / "runs"
    if runs.is_symlink() or (runs.exists() and not runs.is_dir()):
        return False
    return all(
        d.is_dir() and not d.is_symlink() and {f.name for f in d.iterdir()} <= {"record.json"}
        for d in (runs.iterdir() if runs.is_dir() else [])
    )


def export_baseline(src: Path, dst: Path) -> int:
    """Replace ``dst`` with the slimmed records of ``src``; returns how many were written.

    ``dst`` must be absent, empty or a baseline written here: anything else is refused
    (exit 2), never deleted. The new baseline is built beside it and swapped in.
    """

    src, dst = Path(src), Path(dst)
    _check_out_path(dst)
    if dst.is_symlink():
        raise UsageError(f"{dst} is a symbolic link; choose a real directory for the baseline")
    if dst.exists() and any(dst.iterdir()) and not _is_baseline(dst):
        raise UsageError(
            f"{dst} holds files that are not a lorabench baseline; refusing to replace it (choose another directory)"
        )
    records = load_records(src)
    if not records:
        raise UsageError(f"{src}: no records to freeze")
    new = dst.with_name(f".{dst.name}.new{os.getpid()}")
    old = dst.with_name(f".{dst.name}.old{os.getpid()}")
    try:
        atomic.ensure_dir(new.parent, new)
        _write_baseline(new, records, leaderboard(records)[1])
        with atomic.signals_held():
            if dst.exists():
                os.replace(dst, old)
            os.replace(new, dst)
    except OSError as exc:
        raise UsageError(f"cannot write the baseline {dst}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return len(records)


def _write_baseline(dst: Path, records: list[Record], board: str) -> None:
    suites = sorted({str(r.suite) for r in records})
    marker = {"kind": "baseline", "suite": suites[0] if len(suites) == 1 else suites}
    atomic.write_text(dst / MARKER, json.dumps(marker, indent=2) + "\n", dst)
    for rec in records:
        slim = {k: v for k, v in rec.to_dict().items() if k not in DROP}
        resolved = dict(slim.get("resolved") or {})
        resolved.pop("resolved_path", None)  # a path on the machine that made the baseline
        slim["resolved"] = resolved
        env = dict(slim.get("env") or {})
        env.pop("executable", None)  # likewise
        slim["env"] = env
        path = dst / "runs" / str(rec.run_id) / "record.json"
        atomic.write_text(path, json.dumps(slim, indent=1, sort_keys=True, default=str) + "\n", dst)
    atomic.write_text(dst / "leaderboard.md", board, dst)


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
