"""``--executor ray``: each run is a Ray task that requests its resources.

Ray is optional (``pip install lorabench[ray]``). Each task runs in a Ray worker
process that serves that one task only (``max_calls=1``), so every run still gets a
fresh process with clean peak counters and its own CUDA context; Ray sets
``CUDA_VISIBLE_DEVICES`` for tasks that request a GPU. Runs return their results to
the driver, which alone writes records; a worker's own files (``log.txt``,
``adapter/``) land in the run directory on the node that ran it, so on a multi-node
cluster ``--out`` should be on a shared filesystem.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.execute.base import RunResult, timeout_of
from lorabench.models.ref import ModelRef
from lorabench.spec import RunSpec
from lorabench.vocab import Device, resolve_device


def _ray_run(spec_dict: dict[str, Any], run_dir: str, timeout: float | None) -> dict[str, Any]:
    """Body of a run's Ray task (in a fresh, single-use worker process)."""
    from lorabench.execute.entry import run_here

    if timeout is not None:
        # The task kills its own worker at the deadline; the driver turns the lost
        # worker into a `timeout` row (it knows the deadline has passed).
        watchdog = threading.Timer(timeout, lambda: os._exit(124))
        watchdog.daemon = True
        watchdog.start()
    return run_here(spec_dict, run_dir)


def _ray_prepare(paths: list[str], log_path: str) -> dict[str, Any]:
    from lorabench.models.builtin import ensure_builtin

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return {"ok": True, "paths": {p: str(ensure_builtin(ModelRef.parse(p).name)) for p in paths}}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _ray_env() -> dict[str, Any]:
    from lorabench.provenance import device_environment

    return device_environment()


class RayExecutor:
    """Submits every pending run as a Ray task; results come back as tasks finish."""

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'lorabench[ray]'") from None
        self.ray = ray
        self.address = address
        self._owns = False
        if not ray.is_initialized():
            # Workers must import this checkout of lorabench, as the driver does.
            env_vars = {
                k: os.environ[k] for k in ("PYTHONPATH", "LORABENCH_CACHE", "HF_HUB_OFFLINE") if k in os.environ
            }
            ray.init(
                address=address,
                runtime_env={"env_vars": env_vars} if env_vars else None,
                log_to_driver=False,
                **init_kwargs,
            )
            self._owns = True
        self._gpus = float(ray.cluster_resources().get("GPU", 0))

    def _options(self, spec: RunSpec) -> dict[str, Any]:
        """The resources one run asks Ray for: its threads as CPUs, one GPU if it uses CUDA."""
        ex = spec.execution
        # What the cluster offers stands in for torch's answer (the driver must not touch CUDA);
        # a run that names cuda asks for a GPU even where the cluster lists none, as it always has.
        wants_gpu = resolve_device(ex.device, cuda_available=self._gpus > 0 or ex.device == Device.CUDA) == Device.CUDA
        return {
            "num_cpus": ex.threads or 1,
            "num_gpus": 1 if wants_gpu else 0,
            "max_calls": 1,
            "max_retries": 0,
        }

    def _remote(self, fn: Any, **options: Any) -> Any:
        return self.ray.remote(**options)(fn)

    def _result(self, spec: RunSpec, ref: Any, started: float) -> RunResult:
        ray = self.ray
        timeout = timeout_of(spec)
        elapsed = time.perf_counter() - started
        executor = {"name": self.name, "address": self.address}
        try:
            msg: dict[str, Any] = ray.get(ref)
        except Exception as exc:
            if timeout is not None and elapsed >= timeout:
                return {
                    "status": "timeout",
                    "error": f"run exceeded execution.timeout_s={timeout:g}s and was killed",
                    "wall_s": elapsed,
                    "executor": executor,
                }
            text = f"{type(exc).__name__}: {exc}"
            status = "oom" if "OutOfMemoryError" in type(exc).__name__ or "out of memory" in text.lower() else "failed"
            return {"status": status, "error": f"Ray task lost: {text}"[:4000], "wall_s": elapsed, "executor": executor}
        # Includes the time the task waited for resources, like a queue's latency.
        msg["isolation_s"] = max(0.0, elapsed - float(msg.get("wall_s") or 0.0))
        msg["executor"] = executor
        return msg  # type: ignore[return-value]

    def submit(self, spec: RunSpec, run_dir: Path) -> RunResult:
        return next(iter(self.run_many([(spec, run_dir)])))[1]

    def run_many(self, items: Iterable[tuple[RunSpec, Path]]) -> Iterator[tuple[RunSpec, RunResult]]:
        ray = self.ray
        pending: dict[Any, tuple[RunSpec, float]] = {}
        for spec, run_dir in items:
            task = self._remote(_ray_run, **self._options(spec))
            ref = task.remote(spec.to_dict(), str(run_dir.resolve()), timeout_of(spec))
            pending[ref] = (spec, time.perf_counter())
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    spec, started = pending.pop(ref)
                    yield spec, self._result(spec, ref, started)
        finally:
            for ref in pending:  # Ctrl-C: stop what has not finished
                ray.cancel(ref, force=True)

    def prepare(self, builtin_paths: list[str], log_path: Path) -> dict[str, Any]:
        task = self._remote(_ray_prepare, num_cpus=1, max_calls=1)
        return self.ray.get(task.remote(builtin_paths, str(log_path.resolve())))

    def environment(self) -> dict[str, Any]:
        task = self._remote(_ray_env, num_cpus=1, num_gpus=1 if self._gpus > 0 else 0, max_calls=1)
        env = self.ray.get(task.remote())
        env["ray"] = self.ray.__version__
        return env

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
