"""Every fault has a name and a bound: start-up hangs (forkserver and run process), a driver
SIGTERMed while its forkserver hangs, overflow in metrics, a full disk, a model directory
without a tokenizer.

Faults are injected from outside lorabench: a ``sitecustomize`` put on the CLI's PYTHONPATH
hangs an import or makes a write fail with ENOSPC (through an audit hook, at the point where
the disk write would happen), in the processes the fault names. lorabench has no test hook.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, cli_env, run_cli

SUITE = """
name: faults
matrix: {{model: [builtin:tiny-gpt2], method: [{method}], task: [synthetic-lm]}}
train: {{steps: {steps}, batch_size: 4, lr: {lr}, max_seq_len: 32, warmup_steps: 1}}
eval: {{batch_size: 16, max_batches: 1}}
execution: {{threads: 1, timeout_s: 300, startup_timeout_s: {startup}}}
"""

# LB_FAULT picks the fault; LB_FAULT_ID (the test's tmp dir) marks every process of the test.
SITECUSTOMIZE = """
import os, sys

_fault = os.environ.get("LB_FAULT")
_server = "multiprocessing.forkserver" in " ".join(getattr(sys, "orig_argv", []))
if _fault == "enospc":
    import errno

    def _full_disk(event, args):
        # peft writes adapter_config.json with open(): a full disk answers ENOSPC there.
        if event == "open" and str(args[0]).endswith("adapter_config.json") and "w" in str(args[1] or ""):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))

    sys.addaudithook(_full_disk)
elif _fault in ("hang-forkserver", "hang-run") and _server:
    import time

    _pid = os.getpid()
    # The forkserver hangs importing torch (its preload), or a run process (forked, another
    # pid) hangs importing bitsandbytes (its own start-up imports).
    _name = "torch" if _fault == "hang-forkserver" else "bitsandbytes"

    class _Hang:
        def find_spec(self, name, path=None, target=None):
            if name == _name and (_fault == "hang-forkserver") == (os.getpid() == _pid):
                while True:
                    time.sleep(1)
            return None

    sys.meta_path.insert(0, _Hang())
"""


def _env(tmp_path: Path, fault: str | None) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = cli_env()
    env["PYTHONPATH"] = str(site) + os.pathsep + env["PYTHONPATH"]
    env["LB_FAULT_ID"] = str(tmp_path)
    env.pop("LB_FAULT", None)
    if fault:
        env["LB_FAULT"] = fault
    return env


def _cli(tmp_path: Path, fault: str | None, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorabench", *args],
        cwd=REPO,
        env=_env(tmp_path, fault),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _suite(tmp_path: Path, lr: float = 3e-3, startup: float = 300, method: str = "lora", steps: int = 2) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(SUITE.format(lr=lr, startup=startup, method=method, steps=steps))
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def _forkservers(tmp_path: Path) -> list[int]:
    """pids of this test's forkserver processes (marked by LB_FAULT_ID in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.forkserver" in cmd and f"LB_FAULT_ID={tmp_path}".encode() in env:
            found.append(int(entry.name))
    return found


# -- start-up bounds and the forkserver's life -----------------------------------------------


@pytest.mark.slow
def test_a_forkserver_hanging_in_its_preload_is_killed_at_the_startup_timeout(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = _cli(tmp_path, "hang-forkserver", "run", str(_suite(tmp_path, startup=5)), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "did not finish starting within execution.startup_timeout_s=5s" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 120
    time.sleep(1)
    assert not _forkservers(tmp_path)


@pytest.mark.slow
def test_a_run_process_hanging_in_its_start_up_becomes_a_timeout_row(tmp_path: Path) -> None:
    out = tmp_path / "o"
    # 45 s: the forkserver's own start (same bound) takes ~10 s idle, ~30 s on a loaded 2-core machine.
    proc = _cli(tmp_path, "hang-run", "run", str(_suite(tmp_path, startup=45)), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "timeout", rec["error"]
    assert "did not finish starting" in rec["error"] and "startup_timeout_s=45s" in rec["error"]


@pytest.mark.slow
def test_a_sigtermed_driver_takes_its_forkserver_even_while_it_hangs_in_its_preload(tmp_path: Path) -> None:
    driver = subprocess.Popen(
        [sys.executable, "-m", "lorabench", "run", str(_suite(tmp_path)), "--out", str(tmp_path / "o")],
        cwd=REPO,
        env=_env(tmp_path, "hang-forkserver"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not servers and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver exited before its forkserver started"
            time.sleep(0.5)
            servers = _forkservers(tmp_path)
        assert servers, "no forkserver started"
        time.sleep(2)  # it is inside its preload now, hanging on `import torch`
        driver.send_signal(signal.SIGTERM)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _forkservers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _forkservers(tmp_path), "the forkserver outlived its driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in _forkservers(tmp_path):
            os.kill(pid, signal.SIGKILL)


def test_startup_timeout_does_not_change_run_ids() -> None:
    from lorabench.plan import expand
    from lorabench.validate import parse_suite

    text = "name: s\nmatrix: {model: [builtin:tiny-gpt2], method: [lora], task: [synthetic-lm]}\ntrain: {steps: 5}\n"
    plain = expand(parse_suite(text, "a.yaml"))
    bounded = expand(parse_suite(text + "execution: {startup_timeout_s: 7}\n", "b.yaml"))
    assert bounded[0].execution.startup_timeout_s == 7
    assert [s.run_id for s in plain] == [s.run_id for s in bounded]


# -- numbers that overflow -------------------------------------------------------------------


def test_an_overflowing_eval_loss_is_infinite_perplexity_and_the_run_diverged() -> None:
    import torch

    from lorabench.run.train import Diverged, check_finite
    from lorabench.suite.schema import EvalSettings
    from lorabench.tasks.base import TaskData
    from lorabench.tasks.causal_lm import CausalLM

    class Huge(torch.nn.Module):
        """Logits with a gap of 1e4 between classes: a cross-entropy loss of ~1e4 for a wrong guess."""

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            logits = torch.zeros(*input_ids.shape, 8)
            logits[..., 0] = 1e4  # always predicts token 0
            return type("Out", (), {"logits": logits})()

    class Tok:
        pad_token_id = 0

        def decode(self, ids: list[int]) -> str:
            return " ".join(map(str, ids))

    class Ctx:
        device = "cpu"

        def autocast(self) -> Any:
            import contextlib

            return contextlib.nullcontext()

    task = CausalLM("lm", {"stride": None})
    data = TaskData(train=[], eval=[([1, 2, 3, 4], [1, 2, 3, 4])])
    result = task.evaluate(Huge(), Tok(), data, EvalSettings(batch_size=1), Ctx())  # no OverflowError
    assert result.metrics["perplexity"] == math.inf and result.metrics["eval_loss"] > 1e3
    with pytest.raises(Diverged, match="perplexity is inf"):
        check_finite(result.metrics)
    check_finite({"perplexity": 5.0, "token_accuracy": 0.5})


@pytest.mark.slow
def test_lr_1e3_ends_as_diverged_not_as_an_overflow_error(tmp_path: Path) -> None:
    out = tmp_path / "o"
    # Full fine-tuning at lr 1e3: the training loss stays finite, the eval loss overflows exp().
    proc = run_cli("run", str(_suite(tmp_path, lr=1e3, method="full", steps=8)), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "diverged" and "OverflowError" not in rec["error"], rec["error"]
    assert "perplexity is inf" in rec["error"]


# -- the environment, not the run ------------------------------------------------------------


def test_environment_faults_are_failed_env_and_others_are_not() -> None:
    import errno

    from lorabench.run.outcome import classify

    assert classify(OSError(errno.ENOSPC, "No space left on device")) == "failed_env"
    assert classify(OSError(errno.EDQUOT, "Disk quota exceeded")) == "failed_env"
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from exc
    except RuntimeError as wrapped:
        assert classify(wrapped) == "failed_env"
    assert classify(RuntimeError("[enforce fail] file write failed: No space left on device")) == "failed_env"
    assert classify(FileNotFoundError(errno.ENOENT, "No such file or directory")) == "failed"
    assert classify(OverflowError("Python int too large to convert to C long")) == "failed"


@pytest.mark.slow
def test_a_full_disk_is_failed_env_and_rerun_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "o"
    suite = _suite(tmp_path)
    proc = _cli(tmp_path, "enospc", "run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "failed_env" and "No space left on device" in rec["error"], rec["error"]
    assert "failed_env" in (out / "leaderboard.md").read_text()
    # The disk has space again: resume reruns it (every other failure would be reused).
    proc = _cli(tmp_path, None, "run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 to run (1 again after an environment fault, failed_env), 0 already recorded" in proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "success"


def test_a_model_directory_without_tokenizer_files_is_refused(tmp_path: Path) -> None:
    import shutil

    from lorabench.models.builtin import ensure_builtin
    from lorabench.models.loading import ModelLoadError, load_tokenizer

    src = ensure_builtin("tiny-gpt2")
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, bare / name)
    assert load_tokenizer(str(src))  # the full directory is fine
    with pytest.raises(ModelLoadError, match="no usable tokenizer files"):
        load_tokenizer(str(bare))  # at load, before any training: transformers built an empty one
    # And before any process: validate (and so run) refuses the directory with its line.
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: s\nmatrix: {{model: [{bare}], method: [lora], task: [synthetic-lm]}}\ntrain: {{steps: 5}}\n"
    )
    proc = run_cli("validate", str(suite))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"s.yaml:2: model '{bare}' has no tokenizer files" in proc.stderr, proc.stderr
