"""Run a whole suite: plan → prepare built-ins → execute each run → record → report.

Resume is by run_id: a run whose record exists is not run again (``force`` reruns
everything, ``retry_failed`` reruns non-successes). Ctrl-C kills the current run,
keeps every finished record, rebuilds the report and exits 130.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorabench.plan import RunSpec, expand
from lorabench.record import load_records, make_record, read_record, write_record
from lorabench.suite.schema import Suite


@dataclass
class SuiteOutcome:
    out_dir: Path
    statuses: Counter[str]
    ran: int
    reused: int
    interrupted: bool = False


def _pending(specs: list[RunSpec], runs_dir: Path, force: bool, retry_failed: bool) -> tuple[list[RunSpec], int]:
    todo, reused = [], 0
    for spec in specs:
        path = runs_dir / spec.run_id / "record.json"
        if path.exists() and not force:
            rec = read_record(path)
            if rec["status"] == "success" or not retry_failed:
                reused += 1
                continue
        todo.append(spec)
    return todo, reused


def builtin_ready(path: str) -> bool:
    """True when built-in model ``builtin:NAME`` is already pretrained and cached."""
    from lorabench.models.builtin import model_dir

    return (model_dir(path.split(":", 1)[1]) / ".complete").exists()


def run_suite(
    suite: Suite,
    out_dir: Path,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    unavailable: dict[str, str] | None = None,
) -> SuiteOutcome:
    """Execute every pending run of ``suite`` into ``out_dir`` and rebuild the report.

    ``unavailable`` maps model paths that preflight found cannot load here (hub ids,
    offline, not cached) to their error: those runs are recorded as failed without a process.
    """
    from tqdm import tqdm

    from lorabench.execute import LocalExecutor
    from lorabench.report import build_report
    from lorabench.run.env import git_state

    specs = expand(suite)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "suite.yaml").write_text(Path(suite.file).read_text(encoding="utf-8"), encoding="utf-8")
    (out_dir / "plan.json").write_text(
        json.dumps([{"run_id": s.run_id, "label": s.label} for s in specs], indent=2) + "\n"
    )
    todo, reused = _pending(specs, runs_dir, force, retry_failed)
    log = sys.stderr
    print(
        f"lorabench: suite {suite.name!r}: {len(specs)} runs, {len(todo)} to run, {reused} already recorded "
        f"-> {out_dir}",
        file=log,
    )
    statuses: Counter[str] = Counter()
    git = git_state()
    executor = LocalExecutor()
    interrupted = False
    ran = 0
    try:
        builtins = sorted({s.model["path"] for s in todo if s.model["path"].startswith("builtin:")})
        missing = [b for b in builtins if not builtin_ready(b)]
        if missing:
            print(f"lorabench: preparing {', '.join(missing)} (first use: pretrained once, then cached)", file=log)
            t0 = time.perf_counter()
            prep = executor.prepare(missing, out_dir / "prepare.log")
            if not prep.get("ok"):
                # Each affected run will fail with the same error and become a row.
                print(
                    f"lorabench: preparing built-in models failed: {prep.get('error')} (see {out_dir / 'prepare.log'})",
                    file=log,
                )
            else:
                print(f"lorabench: built-in models ready in {time.perf_counter() - t0:.1f}s", file=log)
        bar = tqdm(todo, desc=f"{suite.name}", unit="run", disable=not progress, file=log, dynamic_ncols=True)
        for spec in bar:
            bar.set_postfix_str(spec.label)
            run_dir = runs_dir / spec.run_id
            if unavailable and spec.model["path"] in unavailable:
                result: dict[str, Any] = {"status": "failed", "error": unavailable[spec.model["path"]], "wall_s": 0.0}
            else:
                result = executor.run(spec, run_dir)
            record = make_record(spec, result, git)
            write_record(run_dir, record, result.get("predictions"))
            statuses[record["status"]] += 1
            ran += 1
            if record["status"] != "success":
                bar.write(f"  {spec.label}: {record['status']}: {record['error']}", file=log)
        bar.close()
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\nlorabench: interrupted; {ran} new record(s) kept in {runs_dir}. Run the same command to resume.",
            file=log,
        )
    records = load_records(out_dir)
    build_report(out_dir, records)
    return SuiteOutcome(out_dir, Counter(r["status"] for r in records), ran, reused, interrupted)


def summary_line(outcome: SuiteOutcome) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items()))
    return f"lorabench: {counts} ({outcome.ran} run now, {outcome.reused} reused) -> {outcome.out_dir}"


def describe_plan(specs: list[RunSpec]) -> list[dict[str, Any]]:
    return [{"run_id": s.run_id, "label": s.label} for s in specs]
