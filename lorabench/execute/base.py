"""The executor seam: the driver hands specs to an executor and gets results back.

An executor decides where and how each run's process lives (a local forkserver, one
process per GPU of a pool, a Ray task); it never writes records. Every result has a
``status`` (``vocab.Status``), whatever happened to the process: the driver alone
turns results into records, so the lock, atomic writes and resume hold for every
executor.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypedDict

from lorabench.spec import RunSpec
from lorabench.suite.schema import ExecutionSettings


class RunResult(TypedDict, total=False):
    """What a run (or its executor, when the run could not report) returns.

    ``wall_s`` is the run's own work, measured inside its process; ``isolation_s`` is
    the driver's wall time for the run minus ``wall_s`` (fork or task start, the
    run-side imports ``import_s``, the CUDA context ``cuda_init_s``, result transfer).
    """

    status: str
    error: str | None
    wall_s: float | None
    isolation_s: float | None
    import_s: float | None
    cuda_init_s: float | None
    executor: dict[str, Any]
    env: dict[str, Any]
    metrics: dict[str, Any]
    val_metrics: dict[str, Any]  # only where the task has a validation split
    profile: dict[str, Any]
    resolved: dict[str, Any]
    curves: dict[str, Any]
    predictions: list[dict[str, Any]]
    traceback: str
    log_tail: str | None


class Executor(Protocol):
    """Runs specs, each in its own process; yields a result with a status for each."""

    name: str

    def prepare(self, builtin_paths: list[str], log_path: Path) -> dict[str, Any]:
        """Materialise built-in models before any measured run (``{"ok": bool, ...}``)."""
        ...

    def environment(self) -> dict[str, Any]:
        """Device facts (torch, CUDA, GPU names, driver) for records of runs that died."""
        ...

    def submit(self, spec: RunSpec, run_dir: Path) -> RunResult:
        """Run one spec to completion."""
        ...

    def run_many(self, items: Iterable[tuple[RunSpec, Path]]) -> Iterator[tuple[RunSpec, RunResult]]:
        """Run every (spec, run_dir); yield results as runs finish (in any order)."""
        ...

    def close(self) -> None:
        """Stop whatever the executor started (forkserver, threads, Ray connection)."""
        ...


def death(code: int | None) -> tuple[str, str]:
    """Status and message for a run process that died without reporting back."""
    if code is not None and code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if -code == signal.SIGKILL:
            return "oom", f"run process was killed by {sig} without reporting (most likely the host OOM killer)"
        return "failed", f"run process died from signal {sig}"
    return "failed", f"run process exited with code {code} without reporting a result"


def log_tail(path: Path, n: int = 20) -> str | None:
    """The last ``n`` lines of a run's log (for records of runs that died)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return None


def timeout_of(spec: RunSpec) -> float | None:
    """The spec's ``execution.timeout_s``: the schema requires one, > 0."""
    return spec.execution.timeout_s


#: ``execution.startup_timeout_s`` before a spec exists (the forkserver's preload): the schema's default.
DEFAULT_STARTUP_TIMEOUT_S: float = ExecutionSettings.startup_timeout_s


def startup_timeout_of(spec: RunSpec) -> float:
    """The spec's ``execution.startup_timeout_s``: how long a run process may take to start."""
    return spec.execution.startup_timeout_s
