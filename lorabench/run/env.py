"""The environment a record was measured in: versions, device, and lorabench's git state."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> dict[str, Any]:
    """sha and dirty flag of the lorabench checkout (null when not a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"git_sha": None, "git_dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"git_sha": sha.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_sha": None, "git_dirty": None}


def run_environment(device: str) -> dict[str, Any]:
    """Collected inside the run's process, so it describes where the numbers came from."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        **{pkg: _version(pkg) for pkg in PACKAGES},
        "executable": sys.executable,
    }
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["device_count"] = torch.cuda.device_count()
    else:
        env["device_name"] = env["cpu"]
    return env


def static_environment() -> dict[str, Any]:
    """What the driver knows without importing torch: versions, host, CPU.

    Attached to every record, so a run that died before reporting (OOM-killed, timed
    out, crashed) still says which package versions it ran with.
    """
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        **{pkg: _version(pkg) for pkg in PACKAGES},
        "executable": sys.executable,
    }


def device_environment() -> dict[str, Any]:
    """torch and accelerator facts: CUDA/cuDNN versions, GPU names, NVIDIA driver.

    Imports torch and may initialise CUDA, so it runs in a child process, never in the
    driver or the forkserver.
    """
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        env["device_count"] = torch.cuda.device_count()
        env["device_names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["device_name"] = env["device_names"][0]
        env["cudnn"] = torch.backends.cudnn.version()
        try:
            import pynvml

            pynvml.nvmlInit()
            env["nvidia_driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception as exc:  # NVML missing or unusable: say so rather than guess
            env["nvidia_driver"] = None
            env["nvidia_driver_error"] = f"{type(exc).__name__}: {exc}"
    else:
        env["device_count"] = 0
        env["device_name"] = cpu_name()
    return env
