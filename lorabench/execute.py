"""Execute stage: every run in its own process, forked from a pre-imported forkserver.

The driver (this module) never imports torch: the forkserver does, once, and each run
forks from it. The driver alone writes records, so a run that crashes, hangs or is
killed still becomes a row, and Ctrl-C keeps every finished record.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from pathlib import Path
from typing import Any

from lorabench import run_entry
from lorabench.plan import RunSpec

PRELOAD = ["lorabench.run.worker"]


class LocalExecutor:
    """Runs specs one at a time, each in a fresh process from a warm forkserver."""

    def __init__(self, preload: bool = True) -> None:
        self.ctx = mp.get_context("forkserver")
        if preload:
            self.ctx.set_forkserver_preload(PRELOAD)

    def _call(
        self, target: Any, args: tuple[Any, ...], timeout: float | None
    ) -> tuple[dict[str, Any] | None, int | None, bool]:
        """Start ``target`` in a child; returns (message, exitcode, timed_out)."""
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=target, args=(*args, child), daemon=True)
        proc.start()
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

    def run(self, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
        """Execute one spec; always returns a result with a status."""
        t0 = time.perf_counter()
        timeout = float(spec.execution.get("timeout_s") or 0) or None
        msg, code, timed_out = self._call(run_entry.run, (spec.to_dict(), str(run_dir)), timeout)
        if timed_out:
            return {
                "status": "timeout",
                "error": f"run exceeded execution.timeout_s={timeout:g}s and was killed",
                "wall_s": time.perf_counter() - t0,
            }
        if msg is None:
            status, error = _death(code)
            return {
                "status": status,
                "error": error,
                "wall_s": time.perf_counter() - t0,
                "log_tail": _tail(run_dir / "log.txt"),
            }
        # What isolation cost this run: fork, result transfer and reaping, outside the
        # run's own wall time (measured inside the child).
        msg["isolation_s"] = max(0.0, time.perf_counter() - t0 - float(msg.get("wall_s") or 0.0))
        return msg

    def prepare(self, builtin_paths: list[str], log_path: Path) -> dict[str, Any]:
        """Pretrain/materialise built-in models in a child, outside any measured run."""
        msg, code, _ = self._call(run_entry.prepare, (builtin_paths, str(log_path)), None)
        if msg is None:
            return {"ok": False, "error": _death(code)[1]}
        return msg

    def noop(self) -> dict[str, Any] | None:
        msg, _code, _ = self._call(run_entry.noop, (), 60)
        return msg


def _kill(proc: Any) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)


def _death(code: int | None) -> tuple[str, str]:
    """Status for a child that died without reporting back."""
    if code is not None and code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if -code == signal.SIGKILL:
            return "oom", f"run process was killed by {sig} without reporting (most likely the host OOM killer)"
        return "failed", f"run process died from signal {sig}"
    return "failed", f"run process exited with code {code} without reporting a result"


def _tail(path: Path, n: int = 20) -> str | None:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return None
