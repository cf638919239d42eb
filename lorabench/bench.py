"""Run a whole suite: plan → prepare built-ins → execute each run → record → report.

A thin driver over an ``Executor`` (``lorabench.execute``): it claims and locks the
results directory, hands the executor the pending specs, and alone writes each result
as a record. Resume is by run_id: a run whose record exists is not run again. Failed
records are reused too, by default (a deterministic failure such as an OOM stays cheap
to skip); the summary names them and ``--retry-failed`` reruns them; ``force`` reruns
everything. Ctrl-C kills the runs in flight, keeps every finished record, rebuilds the
report and exits 130.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorabench import atomic
from lorabench.errors import UsageError
from lorabench.models.ref import ModelKind, ModelRef
from lorabench.plan import expand
from lorabench.record import TRANSIENT_STATUSES, load_records, make_record, read_record, write_record
from lorabench.run import progress as run_progress
from lorabench.spec import RunSpec
from lorabench.suite.schema import Suite

#: What a run writes in ``runs/<run_id>/``: none of it may be a symbolic link.
RUN_FILES = ("record.json", "predictions.jsonl", "log.txt", "adapter")


@dataclass
class SuiteOutcome:
    """What a ``run`` did, for its summary line and exit code."""

    out_dir: Path
    statuses: Counter[str]
    ran: int
    reused: int
    interrupted: bool = False
    reused_failures: Counter[str] = field(default_factory=Counter)
    not_in_suite: list[str] = field(default_factory=list)


def _pending(
    specs: list[RunSpec], runs_dir: Path, force: bool, retry_failed: bool
) -> tuple[list[RunSpec], int, Counter[str]]:
    """Specs to run now, how many records are reused, and the statuses of reused failures."""
    todo, reused, reused_failures = [], 0, Counter[str]()
    for spec in specs:
        path = runs_dir / spec.run_id / "record.json"
        if path.exists() and not force:
            rec = read_record(path)
            if rec.status in TRANSIENT_STATUSES:
                todo.append(spec)  # a full disk or similar: the run itself may well succeed now
                continue
            if rec.status == "success" or not retry_failed:
                reused += 1
                if rec.status != "success":
                    reused_failures[rec.status] += 1
                continue
        todo.append(spec)
    return todo, reused, reused_failures


def builtin_ready(path: str) -> bool:
    """True when built-in model ``builtin:NAME`` is already pretrained and cached."""
    from lorabench.models.builtin import model_dir

    return (model_dir(ModelRef.parse(path).name) / ".complete").exists()


def base_environment(executor: Any) -> dict[str, Any]:
    """Provenance every record gets, even when its run dies before reporting.

    Versions and host from the driver (no torch import), device facts from one probe
    process of the executor, git state of the checkout. A run's own ``env`` overrides.
    """
    from lorabench.provenance import git_state, static_environment

    env = static_environment()
    env.update(executor.environment())
    env.update(git_state())
    return env


def run_suite(
    suite: Suite,
    out_dir: Path,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    executor: Any = None,
    unavailable: dict[str, str] | None = None,
    raw_csv: bool = False,
) -> SuiteOutcome:
    """Execute every pending run of ``suite`` into ``out_dir`` and rebuild the report.

    ``unavailable`` maps model paths that preflight found cannot load here (hub ids,
    offline, not cached) to their error: those runs are recorded as failed without a process.
    """
    from lorabench.results_dir import claim, locked

    try:
        specs = expand(suite)
        claim(out_dir, suite.name, force=force)
        with locked(out_dir, sys.stderr):
            return _run_locked(
                suite, specs, out_dir, force, retry_failed, progress, executor, unavailable or {}, raw_csv
            )
    finally:
        if executor is not None:
            executor.close()


def _run_locked(
    suite: Suite,
    specs: list[RunSpec],
    out_dir: Path,
    force: bool,
    retry_failed: bool,
    progress: bool,
    executor: Any,
    unavailable: dict[str, str],
    raw_csv: bool = False,
) -> SuiteOutcome:
    from tqdm import tqdm

    from lorabench.execute import make_executor
    from lorabench.report import build_report

    log = sys.stderr
    runs_dir = atomic.ensure_dir(out_dir, out_dir / "runs")
    atomic.write_bytes(out_dir / "suite.yaml", Path(suite.file).read_bytes(), out_dir)
    atomic.write_text(out_dir / "plan.json", json.dumps(describe_plan(specs), indent=2) + "\n", out_dir)
    todo, reused, reused_failures = _pending(specs, runs_dir, force, retry_failed)
    for spec in todo:  # before any run starts: a link planted in a run's directory is refused, not followed
        for name in RUN_FILES:
            atomic.check_no_links(out_dir, runs_dir / spec.run_id / name)
    again = sum((runs_dir / s.run_id / "record.json").exists() for s in todo) if not (force or retry_failed) else 0
    print(
        f"lorabench: suite {suite.name!r}: {len(specs)} runs, {len(todo)} to run"
        + (f" ({again} again after an environment fault, failed_env)" if again else "")
        + f", {reused} already recorded -> {out_dir}",
        file=log,
    )
    interrupted = False
    ran = 0
    if unavailable:
        ran += _record_unavailable([s for s in todo if s.model.path in unavailable], unavailable, runs_dir)
        todo = [s for s in todo if s.model.path not in unavailable]
    if any(s.execution.gpu_memory for s in todo):
        recorded, todo = _plan_memory(todo, runs_dir)
        ran += recorded
    own = executor is None and bool(todo)
    executor = make_executor() if own else executor
    several = sorted({s.execution.processes for s in todo if s.execution.processes > 1})
    if several and getattr(executor, "name", "local") == "ray":
        # A Ray task is one worker with the resources it asked for; ranks forked inside it are untested.
        raise UsageError(
            f"execution.processes: {several[0]} runs with the local executor only; --executor ray runs one "
            "process per run"
        )
    if todo and hasattr(executor, "startup_timeout_s"):
        from lorabench.execute.base import startup_timeout_of

        # The forkserver starts with the first process below (the environment probe).
        executor.startup_timeout_s = max(startup_timeout_of(s) for s in todo)
    try:
        if todo:
            env = base_environment(executor)
            _prepare_builtins(executor, todo, out_dir)
            bar = tqdm(total=len(todo), desc=f"{suite.name}", unit="run", disable=not progress, file=log)
            status = StatusLine(bar, todo, runs_dir) if progress else None
            items = ((spec, runs_dir / spec.run_id) for spec in todo)
            try:
                for spec, result in executor.run_many(items):
                    record = make_record(spec, dict(result), env)
                    write_record(runs_dir / spec.run_id, record, result.get("predictions"))
                    (runs_dir / spec.run_id / run_progress.FILENAME).unlink(missing_ok=True)
                    ran += 1
                    bar.update(1)
                    if status is not None:
                        status.done(spec.run_id)
                    if record.status != "success":
                        bar.write(f"  {spec.label}: {record.status}: {record.error}", file=log)
            finally:
                if status is not None:
                    status.stop()
            bar.close()
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\nlorabench: interrupted; {ran} new record(s) kept in {runs_dir}. Run the same command to resume.",
            file=log,
        )
    finally:
        if own:
            executor.close()
    plan_ids = {s.run_id for s in specs}
    records = load_records(out_dir)
    current = [r for r in records if r.run_id in plan_ids]
    others = [r for r in records if r.run_id not in plan_ids]
    build_report(out_dir, records, run_ids=plan_ids, raw_csv=raw_csv)
    return SuiteOutcome(
        out_dir,
        Counter(r.status for r in current),
        ran,
        reused,
        interrupted,
        reused_failures,
        [f"{r.run_id} {r.label} ({r.status})" for r in others],
    )


class StatusLine:
    """The progress bar's status: the running point(s) with their step and loss.

    Runs are other processes; each writes ``runs/<id>/progress.json`` when it logs the loss
    (lorabench.run.progress). A daemon thread reads those of the runs still pending once
    a second, so a long run shows ``tiny-bert/lora-r8/...: step 120/200, loss 0.41``
    instead of sitting at ``0/2``; before any file appears, the next point in order is
    shown as starting.
    """

    def __init__(self, bar: Any, specs: list[RunSpec], runs_dir: Path, every_s: float = 1.0) -> None:
        self.bar, self.runs_dir, self.every_s = bar, runs_dir, every_s
        self.pending = {s.run_id: s.label for s in specs}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="lorabench-status", daemon=True)
        self._thread.start()

    def text(self) -> str:
        with self._lock:
            pending = list(self.pending.items())
        running = [
            run_progress.status_text(label, p)
            for rid, label in pending
            if (p := run_progress.read(self.runs_dir / rid)) is not None
        ]
        if not running and pending:
            running = [run_progress.status_text(pending[0][1], None)]
        return "; ".join(running)

    def refresh(self) -> None:
        self.bar.set_postfix_str(self.text(), refresh=True)

    def done(self, run_id: str) -> None:
        with self._lock:
            self.pending.pop(run_id, None)
        self.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _record_unavailable(specs: list[RunSpec], unavailable: dict[str, str], runs_dir: Path) -> int:
    """Failed records, without spending a process, for runs whose model cannot load here."""
    from lorabench.provenance import git_state, static_environment

    if not specs:
        return 0
    env = {**static_environment(), **git_state()}
    for spec in specs:
        result: dict[str, Any] = {"status": "failed", "error": unavailable[spec.model.path], "wall_s": 0.0}
        write_record(runs_dir / spec.run_id, make_record(spec, result, env))
        print(f"  {spec.label}: failed: {result['error']}", file=sys.stderr)
    return len(specs)


def _plan_memory(todo: list[RunSpec], runs_dir: Path) -> tuple[int, list[RunSpec]]:
    """Check every point with ``execution.gpu_memory`` before any run starts.

    A point predicted not to fit is a ``predicted_oom`` row when its suite says
    ``skip_predicted_oom`` (never dropped), else a warning and it runs. Returns (records
    written, the runs still to do).
    """
    from lorabench.preflight import oom_message, plan_fits
    from lorabench.provenance import git_state, static_environment

    log = sys.stderr
    planned = [s for s in todo if s.execution.gpu_memory]
    print(f"lorabench: checking {len(planned)} run(s) against execution.gpu_memory (traced, fake tensors)", file=log)
    verdicts = {v.run_id: v for v in plan_fits(planned)}
    skipped: set[str] = set()
    env: dict[str, Any] | None = None
    for spec in planned:
        v = verdicts[spec.run_id]
        if v.fits is None:
            print(f"  {spec.label}: not checked: {'; '.join(v.notes)}", file=log)
            continue
        if v.fits:
            continue
        msg = oom_message(v, spec.execution.gpu_memory or "")
        if not spec.execution.skip_predicted_oom:
            print(f"  {spec.label}: warning: {msg}; running it (execution.skip_predicted_oom is false)", file=log)
            continue
        env = env or {**static_environment(), **git_state()}
        profile = {
            "predicted_peak_bytes": v.peak_bytes,
            "predicted_method": v.method,
            "measured_over_predicted": None,
            "notes": v.notes,
        }
        result = {"status": "predicted_oom", "error": f"{msg}; not run", "wall_s": 0.0, "profile": profile}
        write_record(runs_dir / spec.run_id, make_record(spec, result, env))
        print(f"  {spec.label}: predicted_oom: {msg}", file=log)
        skipped.add(spec.run_id)
    return len(skipped), [s for s in todo if s.run_id not in skipped]


def _prepare_builtins(executor: Any, todo: list[RunSpec], out_dir: Path) -> None:
    log = sys.stderr
    builtins = sorted({s.model.path for s in todo if s.model.ref.kind is ModelKind.BUILTIN})
    missing = [b for b in builtins if not builtin_ready(b)]
    if not missing:
        return
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


def summary_line(outcome: SuiteOutcome) -> str:
    """The closing summary: counts, what was reused (failures by name), what is not in the suite."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.statuses.items())) or "no records"
    lines = [f"lorabench: {counts} ({outcome.ran} run now, {outcome.reused} reused) -> {outcome.out_dir}"]
    if outcome.reused_failures:
        n = sum(outcome.reused_failures.values())
        kinds = ", ".join(f"{c} {s}" for s, c in sorted(outcome.reused_failures.items()))
        lines.append(
            f"lorabench: {n} reused record(s) did not succeed ({kinds}) and were not rerun; "
            "rerun them with --retry-failed"
        )
    if outcome.not_in_suite:
        lines.append(
            f"lorabench: {len(outcome.not_in_suite)} record(s) in {outcome.out_dir / 'runs'} are not in this suite "
            "(left out of the leaderboard and report):"
        )
        lines.extend(f"  not in this suite: {item}" for item in outcome.not_in_suite)
    return "\n".join(lines)


def describe_plan(specs: list[RunSpec]) -> list[dict[str, Any]]:
    return [{"run_id": s.run_id, "label": s.label} for s in specs]
