"""CI guard (no GPU needed): the forkserver's preload must never initialise CUDA.

A GPU-only test cannot protect this, because CI has no GPU: on a CUDA machine a
preload that imports peft or bitsandbytes (or anything that probes the device) makes
every forked run fail with "Cannot re-initialize CUDA in forked subprocess". Here a
fresh interpreter makes CUDA initialisation raise, imports exactly the executor's
preload (the module and list the executor itself uses), and checks what got loaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO, cli_env

GUARD = r"""
import os
import sys
import torch

def _touched(*args, **kwargs):
    raise AssertionError("the forkserver preload initialised CUDA")

torch.cuda._lazy_init = _touched
if hasattr(torch._C, "_cuda_init"):
    torch._C._cuda_init = _touched

# Probing counts too: without PYTORCH_NVML_BASED_CUDA_CHECK=1, is_available() and
# device_count() initialise the CUDA driver, after which forked children cannot use it.
probes = []

def _probe(name, value):
    def probe(*args, **kwargs):
        import traceback

        probes.append(name + " called from\n" + "".join(traceback.format_stack(limit=6)[:-1]))
        return value

    return probe

# With force_cuda, take the branches that only run where a GPU exists.
torch.cuda.is_available = _probe("torch.cuda.is_available", {force_cuda!r})
torch.cuda.device_count = _probe("torch.cuda.device_count", int({force_cuda!r}))

from lorabench.execute.local import PRELOAD_MODULE
assert PRELOAD_MODULE == "lorabench.execute.preload", PRELOAD_MODULE
import lorabench.execute.preload as preload  # imports exactly preload.PRELOAD

missing = [m for m in preload.PRELOAD if m.startswith("lorabench") and m not in sys.modules]
assert not missing, missing
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in preload.FORBIDDEN)
assert not forbidden, f"the preload imported GPU-probing modules: {{forbidden[:10]}}"
assert not torch.cuda.is_initialized(), "CUDA is initialised after the preload"
assert not probes, "the preload probed for a GPU: " + probes[0]
assert torch.cuda.is_available.__name__ == "probe", "the preload left torch.cuda.is_available replaced"
# What a run checks first: a CUDA build of torch marks a child forked after the driver was touched.
if hasattr(torch._C, "_cuda_isInBadFork"):
    pid = os.fork()
    if pid == 0:
        os._exit(int(torch._C._cuda_isInBadFork()))
    assert os.waitpid(pid, 0)[1] == 0, "a child forked after the preload is in a bad fork"
# What the server may not import, each run imports itself.
from lorabench.execute.entry import RUN_IMPORTS
assert set(RUN_IMPORTS) <= set(preload.FORBIDDEN), RUN_IMPORTS
print("preloaded", sum(m in sys.modules for m in preload.PRELOAD), "of", len(preload.PRELOAD))
{extra}
"""


def _run_guard(force_cuda: bool, extra: str = "") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(GUARD).format(force_cuda=force_cuda, extra=extra)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("force_cuda", [False, True], ids=["cpu", "cuda-available"])
def test_preload_never_initialises_cuda_nor_imports_gpu_probing_modules(force_cuda: bool) -> None:
    proc = _run_guard(force_cuda)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n, total = (int(x) for x in proc.stdout.split()[1::2])
    assert n == total, proc.stdout  # every module of the list is importable here


def test_the_preload_check_fails_loudly_on_a_forbidden_import() -> None:
    """The check inside the preload itself: adding peft to the list is refused with the reason."""
    proc = _run_guard(False, extra="preload.preload(preload.PRELOAD + ('peft',))")
    assert proc.returncode != 0
    assert "PreloadError" in proc.stderr and "it imported" in proc.stderr and "peft" in proc.stderr
    assert "Cannot re-initialize CUDA in forked subprocess" in proc.stderr


def test_run_refuses_to_start_from_a_cuda_initialised_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's own check: a clear error instead of a mysterious one later."""
    import torch

    from lorabench.execute import entry

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(entry.BadForkError, match="forked from a parent that had initialised CUDA"):
        entry.start_run({"execution": {"device": "cpu"}})


def test_a_preload_that_breaks_the_guard_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    """A site hook that imports bitsandbytes into every interpreter (the forkserver too): exit 2, said plainly."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, TINY_TRAIN, cli_env

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import bitsandbytes  # noqa\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nmatrix: {model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}\n" + TINY_TRAIN
    )
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), str(REPO), env["PYTHONPATH"]])
    proc = subprocess.run(
        [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "preload failed" in proc.stderr and "bitsandbytes" in proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr.split("preload failed")[-1]
