"""The environment a record was measured in: versions, device, and lorabench's git state."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Every installed distribution whose version can change a number in a record. Read from
# package metadata (importlib.metadata), so listing them imports none of them.
PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "tokenizers",
    "rouge-score",
    "safetensors",
    "numpy",
    "lorabench",
)


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
    root = Path(__file__).resolve().parents[1]
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


def package_versions() -> dict[str, str | None]:
    """Versions of :data:`PACKAGES` (None when not installed); imports none of them."""
    return {pkg: _version(pkg) for pkg in PACKAGES}


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies under it.

    Records are published: ``.venv/bin/python`` says which interpreter ran, where an
    absolute path would also publish the user's home directory and say nothing more.
    """
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def collect_env(device: str | None = None) -> dict[str, Any]:
    """Where a record's numbers come from: host, Python, package versions and the device.

    With ``device=None`` it is cheap and imports neither torch nor anything that probes a
    GPU, so a driver can call it for a record of a run that never started or died early.
    With ``"cpu"`` or ``"cuda"`` (inside the run's process) it adds torch's thread count
    and, on CUDA, the CUDA/cuDNN/driver versions, device name and count.
    """
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": device,
        **package_versions(),
        "executable": shown_path(sys.executable),
    }
    if device is None:
        return env
    import torch

    # The build's own version: the CUDA wheels on PyPI carry "2.11.0" in their metadata but
    # "2.11.0+cu130" here, and the CUDA build is part of what the numbers depend on.
    env["torch"] = torch.__version__
    env["torch_threads"] = torch.get_num_threads()
    if device == "cuda":
        env.update(cuda_details())
    else:
        env["device_name"] = env["cpu"]
    return env


def cuda_details() -> dict[str, Any]:
    """CUDA runtime, cuDNN, driver, device name and count (call only where CUDA is in use)."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "device_name": torch.cuda.get_device_name(),
        "device_count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cuda_driver": nvidia_driver_version(),
    }


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version from NVML (None where NVML is missing or fails)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML absent, no driver, or a permission problem: the record says null
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def run_environment(device: str) -> dict[str, Any]:
    """Collected inside the run's process, so it describes where the numbers came from."""
    return collect_env(device)


def static_environment() -> dict[str, Any]:
    """What the driver knows without importing torch: versions, host, CPU.

    Attached to every record, so a run that died before reporting (OOM-killed, timed
    out, crashed) still says which package versions it ran with.
    """
    env = collect_env()
    env.pop("device")
    return env


def device_environment() -> dict[str, Any]:
    """torch and accelerator facts: CUDA/cuDNN versions, GPU names, NVIDIA driver.

    Imports torch and may initialise CUDA, so it runs in a child process, never in the
    driver or the forkserver.
    """
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        env.update(cuda_details())
        env["device_names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        env["device_count"] = 0
        env["device_name"] = cpu_name()
    return env
