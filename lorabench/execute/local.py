"""The local executor: every run in a fresh process forked from a warm forkserver.

The driver (this module) never imports torch. The forkserver imports
``lorabench.execute.preload`` once (torch, transformers and the model code, never
anything that touches CUDA) and each run forks from it, so a run starts in well under
a second with clean peak-memory counters and its own CUDA context. The run then
imports peft and bitsandbytes itself (``entry.RUN_IMPORTS``).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.execute import entry
from lorabench.execute.base import RunResult, death, log_tail, timeout_of
from lorabench.spec import RunSpec

#: The forkserver's preload: one module, which imports ``preload.PRELOAD`` and checks
#: that CUDA stayed untouched. The driver refers to it by name so it never imports torch.
PRELOAD_MODULE = "lorabench.execute.preload"


class LocalExecutor:
    """Runs specs one at a time, each in a fresh process from a warm forkserver."""

    name = "local"

    def __init__(self, preload: bool = True) -> None:
        self.ctx = mp.get_context("forkserver")
        # Set to end every run in flight (a pool's threads watch it on Ctrl-C).
        self.cancel = threading.Event()
        if preload:
            self.ctx.set_forkserver_preload([PRELOAD_MODULE])

    def _call(
        self, target: Any, args: tuple[Any, ...], timeout: float | None, kwargs: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any] | None, int | None, bool]:
        """Start ``target`` in a child; returns (message, exitcode, timed_out)."""
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=target, args=(*args, child), kwargs=kwargs or {}, daemon=True)
        try:
            proc.start()
        except EOFError:
            # The forkserver died before forking: its preload raised (PreloadError, printed above).
            raise UsageError(
                "the process server that runs are forked from exited while starting; its preload failed "
                f"(the reason is printed above; see {PRELOAD_MODULE}). No run was started."
            ) from None
        child.close()
        msg: dict[str, Any] | None = None
        timed_out = False
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    timed_out = True
                    break
                if self.cancel.is_set():
                    _kill(proc)
                    break
                if parent.poll(min(0.5, remaining) if remaining is not None else 0.5):
                    try:
                        msg = parent.recv()
                    except EOFError:
                        msg = None
                    break
                if not proc.is_alive():
                    if parent.poll(0):
                        msg = parent.recv()
                    break
        except BaseException:
            _kill(proc)
            raise
        finally:
            parent.close()
        if timed_out:
            _kill(proc)
        else:
            proc.join(timeout=30)
            if proc.is_alive():
                _kill(proc)
        return msg, proc.exitcode, timed_out

    def submit(self, spec: RunSpec, run_dir: Path, device_slot: str | None = None) -> RunResult:
        """Execute one spec; always returns a result with a status."""
        t0 = time.perf_counter()
        timeout = timeout_of(spec)
        msg, code, timed_out = self._call(
            entry.run, (spec.to_dict(), str(run_dir)), timeout, {"device_slot": device_slot}
        )
        executor = {"name": self.name, "device_slot": device_slot}
        if timed_out:
            return {
                "status": "timeout",
                "error": f"run exceeded execution.timeout_s={timeout:g}s and was killed",
                "wall_s": time.perf_counter() - t0,
                "executor": executor,
            }
        if msg is None:
            status, error = death(code)
            return {
                "status": status,
                "error": error,
                "wall_s": time.perf_counter() - t0,
                "log_tail": log_tail(run_dir / "log.txt"),
                "executor": executor,
            }
        # What isolation cost this run: fork, the run-side imports and CUDA context,
        # result transfer and reaping, outside the run's own wall time.
        msg["isolation_s"] = max(0.0, time.perf_counter() - t0 - float(msg.get("wall_s") or 0.0))
        msg["executor"] = executor
        return msg  # type: ignore[return-value]

    run = submit  # the name this method had before the Executor protocol

    def run_many(self, items: Iterable[tuple[RunSpec, Path]]) -> Iterator[tuple[RunSpec, RunResult]]:
        for spec, run_dir in items:
            yield spec, self.submit(spec, run_dir)

    def prepare(self, builtin_paths: list[str], log_path: Path) -> dict[str, Any]:
        """Pretrain/materialise built-in models in a child, outside any measured run."""
        msg, code, _ = self._call(entry.prepare, (builtin_paths, str(log_path)), None)
        if msg is None:
            return {"ok": False, "error": death(code)[1]}
        return msg

    def environment(self) -> dict[str, Any]:
        msg, code, _ = self._call(entry.probe_env, (), 120)
        return msg if msg is not None else {"device_probe_error": death(code)[1]}

    def noop(self) -> dict[str, Any] | None:
        msg, _code, _ = self._call(entry.noop, (), 60)
        return msg

    def imports_only(self) -> dict[str, Any] | None:
        msg, _code, _ = self._call(entry.imports_only, (), 120)
        return msg

    def close(self) -> None:
        """The forkserver exits with the driver; nothing to stop per executor."""


def _kill(proc: Any) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)
