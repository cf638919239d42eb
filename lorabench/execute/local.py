"""The local executor: every run in a fresh process forked from a warm forkserver.

The driver (this module) never imports torch. The forkserver imports
``lorabench.execute.preload`` once (torch, transformers and the model code, never
anything that touches CUDA) and each run forks from it, so a run starts in well under
a second with clean peak-memory counters and its own CUDA context. The run then
imports peft and bitsandbytes itself (``entry.RUN_IMPORTS``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.execute import entry
from lorabench.execute.base import DEFAULT_STARTUP_TIMEOUT_S, RunResult, death, log_tail, startup_timeout_of, timeout_of
from lorabench.spec import RunSpec

#: The forkserver's preload: one module, which imports ``preload.PRELOAD`` and checks
#: that CUDA stayed untouched. The driver refers to it by name so it never imports torch.
PRELOAD_MODULE = "lorabench.execute.preload"
#: The variable the forkserver reads the driver's pid from (``preload.DRIVER_PID_ENV``;
#: not imported from there: importing the preload module imports torch).
DRIVER_PID_ENV = "LORABENCH_DRIVER_PID"


class LocalExecutor:
    """Runs specs one at a time, each in a fresh process from a warm forkserver."""

    name = "local"

    def __init__(self, preload: bool = True, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> None:
        self.ctx = mp.get_context("forkserver")
        # Set to end every run in flight (a pool's threads watch it on Ctrl-C).
        self.cancel = threading.Event()
        # Bound on the forkserver's start (its preload); bench sets it from the suite's
        # execution.startup_timeout_s before the first process is started.
        self.startup_timeout_s = startup_timeout_s
        if preload:
            self.ctx.set_forkserver_preload([PRELOAD_MODULE])
        # The forkserver (a child of this process) dies with it, even while it is still in its preload.
        os.environ[DRIVER_PID_ENV] = str(os.getpid())

    def _start(self, proc: Any) -> None:
        """``proc.start()``, bounded: it waits for the forkserver, which may hang in its preload.

        The server is launched from the calling thread (the driver's main thread in a
        suite): its parent-death signal (see ``preload``) follows the thread that started it.
        """

        forkserver.ensure_running()
        failure: list[BaseException] = []

        def start() -> None:
            try:
                proc.start()
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)

        starter = threading.Thread(target=start, name="lorabench-start", daemon=True)
        starter.start()
        starter.join(self.startup_timeout_s)
        if starter.is_alive():
            _kill_forkserver()
            starter.join(10)
            raise UsageError(
                f"the process server that runs are forked from did not finish starting within "
                f"execution.startup_timeout_s={self.startup_timeout_s:g}s (its preload, {PRELOAD_MODULE}, imports "
                "torch and transformers; a BLAS library can spin there under a memory limit). It was killed; "
                "no run was started."
            )
        if failure and isinstance(failure[0], EOFError):
            # The forkserver died before forking: its preload raised (PreloadError, printed above).
            raise UsageError(
                "the process server that runs are forked from exited while starting; its preload failed "
                f"(the reason is printed above; see {PRELOAD_MODULE}). No run was started."
            )
        if failure:
            raise failure[0]

    def _call(
        self,
        target: Any,
        args: tuple[Any, ...],
        timeout: float | None,
        kwargs: dict[str, Any] | None = None,
        startup_timeout: float | None = None,
    ) -> tuple[dict[str, Any] | None, int | None, str | None]:
        """Start ``target`` in a child; returns (message, exitcode, which timeout struck).

        With ``startup_timeout`` the child must send ``{entry.STARTED: True}`` within it
        (``"startup"`` when it does not); ``timeout`` bounds the whole call (``"run"``).
        """
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=target, args=(*args, child), kwargs=kwargs or {}, daemon=True)
        try:
            self._start(proc)
        finally:
            child.close()
        msg: dict[str, Any] | None = None
        timed_out: str | None = None
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        start_deadline = None if startup_timeout is None else now + startup_timeout
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    timed_out = "run"
                    break
                if start_deadline is not None and now >= start_deadline:
                    timed_out = "startup"
                    break
                waits = [0.5] + [d - now for d in (deadline, start_deadline) if d is not None]
                if self.cancel.is_set():
                    _kill(proc)
                    break
                if parent.poll(min(waits)):
                    try:
                        msg = parent.recv()
                    except EOFError:
                        msg = None
                    if msg is not None and msg.get(entry.STARTED):
                        msg, start_deadline = None, None
                        continue
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
        startup = startup_timeout_of(spec)
        msg, code, timed_out = self._call(
            entry.run, (spec.to_dict(), str(run_dir)), timeout, {"device_slot": device_slot}, startup
        )
        executor = {"name": self.name, "device_slot": device_slot}
        if timed_out:
            error = (
                f"run exceeded execution.timeout_s={timeout:g}s and was killed"
                if timed_out == "run"
                else f"run process did not finish starting (clean-fork check, CUDA context, {', '.join(entry.RUN_IMPORTS)} "
                f"imports) within execution.startup_timeout_s={startup:g}s and was killed"
            )
            return {
                "status": "timeout",
                "error": error,
                "wall_s": time.perf_counter() - t0,
                "log_tail": log_tail(run_dir / "log.txt"),
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


def _kill_forkserver() -> None:
    """SIGKILL the forkserver (stuck in its preload); the next process start launches a new one."""

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill(proc: Any) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(timeout=10)
