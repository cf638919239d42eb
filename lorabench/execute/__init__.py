"""Execute stage: where each run's process lives (local forkserver, GPU pool, Ray).

Importing this package never imports torch: the driver stays light, and only run
processes (forked from the forkserver, or Ray workers) load the ML stack.
"""

from __future__ import annotations

from typing import Any

from lorabench.errors import UsageError
from lorabench.execute.base import Executor, RunResult

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Executor", "RunResult", "make_executor", "parse_devices"]


def parse_devices(text: str | None) -> list[str] | None:
    """``"0,1,2,3"`` → ``["0", "1", "2", "3"]``; each entry becomes one run's CUDA_VISIBLE_DEVICES."""
    if text is None:
        return None
    devices = [d.strip() for d in text.split(",")]
    if not devices or any(not d for d in devices):
        raise UsageError(f"--devices expects a comma-separated list of device ids such as 0,1,2,3, got {text!r}")
    if len(set(devices)) != len(devices):
        raise UsageError(f"--devices lists a device twice: {text!r}")
    return devices


def make_executor(name: str = "local", devices: list[str] | None = None, address: str | None = None) -> Any:
    """The executor for ``--executor NAME [--devices ...] [--address ...]``."""
    if name == "local":
        if address:
            raise UsageError("--address is for --executor ray")
        if devices:
            from lorabench.execute.pool import DevicePoolExecutor

            return DevicePoolExecutor(devices)
        from lorabench.execute.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        if devices:
            raise UsageError("--devices is for the local executor; Ray schedules GPUs itself")
        from lorabench.execute.ray import RayExecutor

        return RayExecutor(address)
    raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def __getattr__(name: str) -> Any:
    """``from lorabench.execute import LocalExecutor`` keeps working (it lives in ``local``)."""
    if name == "LocalExecutor":
        from lorabench.execute.local import LocalExecutor

        return LocalExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
