"""What the forkserver imports once, so that every run forks from a warm interpreter.

Rule: nothing imported here may initialise CUDA or even probe for a GPU. A process
that has initialised the CUDA driver cannot fork usable children ("Cannot re-initialize
CUDA in forked subprocess"), and ``torch.cuda.is_available()`` already initialises the
driver unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (see :func:`preload` for torch modules
that probe at import). peft and bitsandbytes do both at
import time on a CUDA machine (bitsandbytes' ``cuda_specs`` asks for the device
capability), so each run imports them itself (``entry.RUN_IMPORTS``) and pays for it
in its own ``import_s``.

What is here is what dominates a cold start and is GPU-free: torch, transformers'
``modeling_utils`` (the largest single import), torch's compiler stack (which bitsandbytes pulls in
through ``torch.compile``), the Auto classes, the modeling modules
of the architectures lorabench ships or its suites use (transformers imports them
lazily, so without this every run would pay for them again), accelerate, safetensors,
tokenizers, and lorabench's own run stage (which imports peft only inside functions).

``tests/test_isolation_guard.py`` imports exactly ``PRELOAD`` in a fresh interpreter
with CUDA initialisation made to fail, so CI (which has no GPU) catches a change that
breaks this rule.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys

#: Modules the forkserver imports, in order. The CI guard imports this same list.
PRELOAD: tuple[str, ...] = (
    "torch",
    # bitsandbytes wraps its CPU kernels in torch.compile at import, which imports
    # dynamo and inductor (about 3 s of a run's start-up here); both are GPU-free.
    "torch._dynamo",
    "torch._inductor.compile_fx",
    "numpy",
    "safetensors",
    "safetensors.torch",
    "tokenizers",
    "accelerate",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.auto.configuration_auto",
    # Architectures of the built-in models and of the shipped suites and scenarios.
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.llama.modeling_llama",
    "transformers.models.mistral.modeling_mistral",
    "transformers.models.qwen2.modeling_qwen2",
    "transformers.models.falcon.modeling_falcon",
    "transformers.models.opt.modeling_opt",
    "transformers.models.bert.modeling_bert",
    "transformers.models.distilbert.modeling_distilbert",
    "transformers.models.roberta.modeling_roberta",
    "transformers.models.t5.modeling_t5",
    "rouge_score.rouge_scorer",
    # lorabench's run stage: imports torch and transformers only (peft lazily).
    "lorabench.run.pipeline",
    "lorabench.execute.entry",
)

#: Modules that initialise CUDA (or probe the GPU) when imported on a CUDA machine;
#: none may be imported by the forkserver. Runs import the ones they need themselves.
#: Not triton: with a CUDA build of torch, torch._dynamo and transformers.modeling_utils
#: import it whenever it is installed, and importing it touches no GPU (its driver is
#: chosen lazily, at the first kernel launch); the guard test checks that it probes nothing.
FORBIDDEN: tuple[str, ...] = (
    "peft",
    "bitsandbytes",
    "flash_attn",
    "xformers",
    "deepspeed",
    "liger_kernel",
    "apex",
    "vllm",
)


class PreloadError(RuntimeError):
    """The forkserver's preload touched CUDA or imported a module that does."""


def check_cuda_free() -> None:
    """Raise if this process has initialised CUDA or imported a FORBIDDEN module."""
    loaded = sorted(m for m in FORBIDDEN if m in sys.modules)
    torch = sys.modules.get("torch")
    initialised = bool(torch is not None and torch.cuda.is_initialized())
    if loaded or initialised:
        raise PreloadError(
            "the executor's forkserver preload must stay CUDA-free, but "
            + (f"it imported {', '.join(loaded)}" if loaded else "")
            + (" and " if loaded and initialised else "")
            + ("CUDA is initialised" if initialised else "")
            + "; every run forked from it would fail with 'Cannot re-initialize CUDA in forked subprocess'. "
            "Import such modules inside the run (lorabench.execute.entry.RUN_IMPORTS) instead."
        )


def _nvml_has_gpu() -> bool:
    """``torch.cuda.is_available()`` answered without touching the CUDA driver: a CUDA build and an NVIDIA GPU.

    Where NVML cannot start there is no NVIDIA driver, so CUDA could not be used either.
    """
    import torch

    if not torch.backends.cuda.is_built():
        return False
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library or driver (a CPU machine, a CUDA build of torch or not)
        return False


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import ``modules`` (a missing optional one is skipped), then check the result.

    Some torch releases probe the GPU at import: 2.11's ``torch._inductor.runtime.benchmarking``
    (imported by ``compile_fx``) calls ``torch.cuda.is_available()`` at module level, which
    initialises the CUDA driver and so poisons every fork (even torch's NVML-based check
    falls back to the driver where NVML is missing, e.g. a CUDA build on a CPU machine).
    While the modules import, ``is_available`` is answered from NVML alone (the same answer
    for this machine, without the driver); the original is put back afterwards.
    """
    import torch

    is_available = torch.cuda.is_available
    torch.cuda.is_available = _nvml_has_gpu
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:
                if name.startswith("lorabench"):
                    raise
    finally:
        torch.cuda.is_available = is_available
    check_cuda_free()


#: Set by the driver (:class:`lorabench.execute.local.LocalExecutor`) to its pid; the
#: forkserver it launches inherits it and ties its life to that process.
DRIVER_PID_ENV = "LORABENCH_DRIVER_PID"


def die_with_driver() -> None:
    """In the forkserver: be SIGKILLed by the kernel the moment the driver is gone.

    multiprocessing's forkserver notices a dead driver only in its accept loop, which it
    reaches after this preload; a preload that hangs (OpenBLAS spinning at start-up under
    ``prlimit --as``) would outlive a SIGTERMed or SIGKILLed driver forever. A signal
    handler or a Python thread cannot help there (the import holds the GIL), the kernel's
    parent-death signal (Linux ``PR_SET_PDEATHSIG``) can. Elsewhere this does nothing.
    """

    expected = os.environ.get(DRIVER_PID_ENV)
    # Only in a forkserver the driver launched: the CI guard and Ray workers import this module too.
    server = "multiprocessing.forkserver" in " ".join(getattr(sys, "orig_argv", ()))
    if not expected or not server or not sys.platform.startswith("linux"):
        return

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if str(os.getppid()) != expected:  # the driver died before the line above took effect
        os._exit(1)


# The forkserver imports this module by name (multiprocessing's preload list), so the
# preloading, and the check that fails loudly, happen at import.
die_with_driver()
preload()
