"""A local GPU pool: one run per device at a time, each isolated by CUDA_VISIBLE_DEVICES.

Every run still forks from the shared CUDA-free forkserver; the child sets
``CUDA_VISIBLE_DEVICES`` to its device before anything touches CUDA, so it sees
exactly one GPU (as ``cuda:0``). One thread per device hands it the next spec; results
come back to the driver, which alone writes records.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lorabench.execute.base import RunResult
from lorabench.execute.local import LocalExecutor
from lorabench.spec import RunSpec


class DevicePoolExecutor(LocalExecutor):
    """``--devices 0,1,2,3``: as many concurrent runs as devices, one per device."""

    name = "pool"

    def __init__(self, devices: list[str], preload: bool = True) -> None:
        super().__init__(preload=preload)
        self.devices = list(devices)

    def submit(self, spec: RunSpec, run_dir: Path, device_slot: str | None = None) -> RunResult:
        result = super().submit(spec, run_dir, device_slot if device_slot is not None else self.devices[0])
        result["executor"]["name"] = self.name
        return result

    def run_many(self, items: Iterable[tuple[RunSpec, Path]]) -> Iterator[tuple[RunSpec, RunResult]]:
        todo: queue.Queue[tuple[RunSpec, Path] | None] = queue.Queue()
        for item in items:
            todo.put(item)
        done: queue.Queue[tuple[RunSpec, RunResult] | BaseException | None] = queue.Queue()
        stop = threading.Event()

        def worker(device: str) -> None:
            try:
                while not stop.is_set():
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        return
                    if item is None:
                        return
                    spec, run_dir = item
                    done.put((spec, self.submit(spec, run_dir, device)))
            except BaseException as exc:  # surfaced in the driver thread
                done.put(exc)
            finally:
                done.put(None)

        threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in self.devices]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                got = done.get()
                if got is None:
                    running -= 1
                elif isinstance(got, BaseException):
                    raise got
                else:
                    yield got
        finally:
            # Ctrl-C or an error: no new runs start and the runs in flight are killed
            # (their results would not be recorded anyway).
            stop.set()
            if running:
                self.cancel.set()
                for t in threads:
                    t.join(timeout=30)
                self.cancel.clear()

    def environment(self) -> dict[str, Any]:
        env = super().environment()
        env["pool_devices"] = self.devices
        return env
