"""Measurement inside a run: peak memory per phase, timers (parameters: ``accounting.counting``).

Memory sources (optimum-benchmark's set): on CUDA, torch ``max_memory_allocated`` /
``max_memory_reserved`` and NVML per-process usage sampled in a side thread; on every
device, peak host RSS. Each phase has its own peaks: counters are reset at phase
start, never copied from one phase into the next. On CPU the CUDA figures are
recorded as null with the reason in ``profile.notes``, not silently dropped.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from lorabench.record_data import PhaseMemory
from lorabench.vocab import MiB


def _read_hwm() -> int | None:
    """Kernel-tracked peak RSS (VmHWM) of this process, in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@dataclass
class Phase:
    """What :meth:`MemoryMonitor.track` yields: once the block ends, its peaks and wall time."""

    memory: PhaseMemory | None = None
    seconds: float | None = None


class MemoryMonitor:
    """Per-phase peak memory from every available source, sampled in a side thread."""

    def __init__(self, device: str, interval_s: float = 0.02) -> None:

        self.device = device
        self.interval = interval_s
        self._proc = psutil.Process()
        self._peak_rss = 0
        self._peak_nvml: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.notes: list[str] = []
        self._nvml_handle = self._init_nvml() if device == "cuda" else None
        if device != "cuda":
            self.notes.append("device is cpu: torch CUDA allocator and NVML figures do not apply (null)")
        self._hwm_ok = _reset_hwm()
        if not self._hwm_ok:
            self.notes.append("VmHWM reset unsupported: peak RSS comes from sampling only")
        self._thread = threading.Thread(target=self._sample, name="lorabench-memory", daemon=True)
        self._thread.start()

    def _init_nvml(self) -> Any:
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            return pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception as exc:  # no driver / no pynvml: record why
            self.notes.append(f"NVML unavailable ({type(exc).__name__}: {exc}); nvml peaks are null")
            return None

    def _nvml_used(self) -> int | None:
        import pynvml

        pid = os.getpid()
        try:
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(self._nvml_handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    return int(proc.usedGpuMemory)
        except pynvml.NVMLError:
            return None
        # Not listed: in a container the driver may see host PIDs only. Null, not zero.
        return None

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            nv = self._nvml_used() if self._nvml_handle is not None else None
            with self._lock:
                self._peak_rss = max(self._peak_rss, rss)
                if nv is not None:
                    self._peak_nvml = max(self._peak_nvml or 0, nv)
            self._stop.wait(self.interval)

    def _start_phase(self) -> None:
        """Reset every peak counter to the current level."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if self._hwm_ok:
            _reset_hwm()
        with self._lock:
            self._peak_rss = self._proc.memory_info().rss
            self._peak_nvml = None

    @contextlib.contextmanager
    def track(self) -> Iterator[Phase]:
        """``with monitor.track() as phase:``: the block's own peaks (counters reset on entry).

        optimum-benchmark's ``track()``: one phase is one block, so a phase cannot be opened
        and left unclosed, or closed twice. The phase's figures are set when the block ends
        normally; a block that raises fails the run, which records no phase figures.
        """
        phase = Phase()
        self._start_phase()
        t0 = time.perf_counter()
        yield phase
        phase.seconds = time.perf_counter() - t0
        phase.memory = self._end_phase()

    def _end_phase(self) -> PhaseMemory:
        """Peaks since :meth:`_start_phase`, in MiB."""
        alloc = reserved = None
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            alloc = torch.cuda.max_memory_allocated() / MiB
            reserved = torch.cuda.max_memory_reserved() / MiB
        rss = self._proc.memory_info().rss
        with self._lock:
            peak_rss = max(self._peak_rss, rss)
            nvml = self._peak_nvml
        if self._nvml_handle is not None and nvml is None:
            note = "NVML did not list this process (container PID namespace?); nvml peaks are null"
            if note not in self.notes:
                self.notes.append(note)
        hwm = _read_hwm() if self._hwm_ok else None
        if hwm is not None:
            peak_rss = max(peak_rss, hwm)
        return PhaseMemory(
            rss=round(peak_rss / MiB, 2),
            allocated=None if alloc is None else round(alloc, 2),
            reserved=None if reserved is None else round(reserved, 2),
            nvml=None if nvml is None else round(nvml / MiB, 2),
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


class Stopwatch:
    """Wall-clock timing with a device sync at both edges (nanoGPT's discipline)."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.start = 0.0

    def __enter__(self) -> Stopwatch:
        self.sync()  # note: a CPU-GPU sync point, so queued kernels are not timed as ours
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self.start


class HostCPU:
    """How much of the host's CPU other processes used while a phase ran.

    Throughput on a shared machine measures the neighbours as much as the method: on a
    2-core box, a parallel job made the same training 10-25x slower. The system-wide
    busy time (``/proc/stat``, hypervisor steal included) minus this process's own CPU
    time, over the phase's wall time and the host's CPUs, is the share others took; the
    report flags timings taken with a large one (``busy_host``).
    """

    def __init__(self) -> None:

        self._psutil = psutil
        self._proc = psutil.Process()
        self._sys0 = self._busy(psutil.cpu_times())
        own = self._proc.cpu_times()
        self._own0 = own.user + own.system
        self._t0 = time.perf_counter()

    @staticmethod
    def _busy(t: Any) -> float:
        # guest time is already inside user on Linux; idle and iowait are not busy.
        return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))

    def finish(self) -> dict[str, float | int | None]:
        """Shares of the host's CPU capacity (0-1) used by this process and by others."""
        wall = time.perf_counter() - self._t0
        cpus = self._psutil.cpu_count() or 1
        own_t = self._proc.cpu_times()
        own = own_t.user + own_t.system - self._own0
        busy = self._busy(self._psutil.cpu_times()) - self._sys0
        capacity = wall * cpus
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {
            "cpus": cpus,
            "own_cpu_share": round(own / capacity, 4) if capacity > 0 else None,
            "other_cpu_share": round(max(0.0, busy - own) / capacity, 4) if capacity > 0 else None,
            "loadavg_1m": None if load is None else round(load, 2),
        }


class StepClock:
    """Per-step times with no host-device sync per step.

    A sync after every step would drain the GPU queue each time, so the host could no
    longer run ahead (collating, launching) and the timing itself would slow the run
    it measures. On CUDA each boundary is an event recorded on the current stream and
    the intervals are read once, at :meth:`seconds`; on CPU, where work is synchronous,
    ``perf_counter`` marks. :meth:`start` opens a segment (after warm-up, after a
    periodic evaluation), :meth:`lap` closes one step and starts the next, so time
    spent between segments is never counted as a step.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self._marks: list[tuple[Any, bool]] = []  # (event or perf_counter time, closes a step)

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        import torch

        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def start(self) -> None:
        """Open a segment: the next :meth:`lap` measures from here."""
        self._marks.append((self._now(), False))

    def lap(self) -> None:
        """Close the current step (and open the next one)."""
        self._marks.append((self._now(), True))

    def seconds(self) -> list[float]:
        """Seconds per lapped step, in order (one device sync on CUDA)."""
        if self.cuda and self._marks:
            self._marks[-1][0].synchronize()
        out: list[float] = []
        for (a, _), (b, closes) in zip(self._marks, self._marks[1:]):
            if closes:
                out.append(a.elapsed_time(b) / 1000.0 if self.cuda else b - a)
        return out


def dir_bytes(path: str) -> int:
    """Total size of regular files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total
