"""Energy counters: joules the device drew while a run trained, where the hardware says.

Two sources, both cumulative hardware counters read before and after (no sampling):

- GPU: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules
  since the driver loaded; Volta and newer), through ``pynvml`` (nvidia-ml-py).
- CPU: Linux RAPL under ``/sys/class/powercap`` (``intel-rapl:N/energy_uj``, one per CPU
  package, microjoules, wrapping at ``max_energy_range_uj``). Since 2020 kernels make it
  readable by root only.

Either counts the whole device or package, not this process: on a shared host the
neighbours' work is in the figure (the record's ``busy_host`` flag says when). Where
neither is readable the meter has no source and says why, and the record carries that
reason instead of a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")


class EnergyMeter:
    """Joules since :meth:`start`, from NVML on CUDA or RAPL on CPU; ``source`` None with ``reason`` where absent."""

    def __init__(self, device: str, powercap: Path = POWERCAP) -> None:
        self.source: str | None = None
        self.reason: str | None = None
        self._read: Any = None
        self._start = 0.0
        if device == "cuda":
            self._init_nvml()
        else:
            self._init_rapl(powercap)

    def _init_nvml(self) -> None:
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises NotSupported before Volta
        except Exception as exc:  # no pynvml, no driver, an old GPU: say which
            self.reason = f"NVML total-energy counter unavailable ({type(exc).__name__}: {exc})"
            return
        self.source = "nvml"
        self._read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0

    def _init_rapl(self, powercap: Path) -> None:
        # Package domains only (intel-rapl:0, intel-rapl:1): their sub-domains (core, uncore,
        # dram as intel-rapl:0:0 ...) are parts of the package figure, not additions to it.
        zones = sorted(p for p in powercap.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not zones:
            self.reason = f"no RAPL package domain under {powercap} (not an Intel/AMD host exposing powercap)"
            return
        try:
            ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
            for z in zones:
                int((z / "energy_uj").read_text())
        except (OSError, ValueError) as exc:
            self.reason = f"RAPL counters under {powercap} are not readable ({type(exc).__name__}: {exc})"
            return
        self.source = "rapl"
        last = [0] * len(zones)
        total = [0.0]

        def read() -> float:
            # Each package counter wraps at its range: count the joules between reads.
            for i, z in enumerate(zones):
                now = int((z / "energy_uj").read_text())
                if last[i]:
                    total[0] += (now - last[i]) % ranges[i] / 1e6
                last[i] = now
            return total[0]

        read()
        self._read = read

    def start(self) -> None:
        """Start counting from now."""
        if self._read is not None:
            self._start = self._read()

    def joules(self) -> float | None:
        """Joules since :meth:`start` (None without a source; a counter that fails mid-run stops the meter)."""
        if self._read is None:
            return None
        try:
            return self._read() - self._start
        except Exception as exc:  # a counter that vanished (driver reset): say so, keep the run
            self.reason = f"{self.source} counter failed mid-run ({type(exc).__name__}: {exc})"
            self.source, self._read = None, None
            return None

    def describe(self, train_j: float | None) -> dict[str, Any]:
        """The record's ``profile.energy``: joules over training (eval excluded) and the source, or the reason."""
        if self.source is None or train_j is None:
            return {"source": None, "train_j": None, "reason": self.reason}
        scope = "whole GPU" if self.source == "nvml" else "whole CPU package(s), every process on them"
        return {"source": self.source, "train_j": round(train_j, 3), "scope": scope}
