"""The progress bar names the running point and shows its steps and loss (lorabench.run.progress)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from lorabench.bench import StatusLine
from lorabench.run import progress
from tests.conftest import TINY_TRAIN, run_cli


class FakeBar:
    def __init__(self) -> None:
        self.postfix: list[str] = []

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix.append(text)


def test_status_line_shows_the_running_point_with_step_and_loss(tmp_path: Path) -> None:
    specs = [SimpleNamespace(run_id=f"r{i}", label=f"m/lora-r8/fp32/t/s{i}") for i in range(2)]
    bar = FakeBar()
    status = StatusLine(bar, specs, tmp_path, every_s=0.05)
    try:
        assert bar.postfix[-1] == "m/lora-r8/fp32/t/s0: starting"  # the next in order, before any step
        (tmp_path / "r0").mkdir()
        progress.set_run_dir(tmp_path / "r0")
        progress.report(12, 47, 1.8312)
        deadline = time.monotonic() + 5
        while "step" not in bar.postfix[-1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bar.postfix[-1] == "m/lora-r8/fp32/t/s0: step 12/47, loss 1.83"
        (tmp_path / "r0" / progress.FILENAME).unlink()
        status.done("r0")
        assert bar.postfix[-1] == "m/lora-r8/fp32/t/s1: starting"
    finally:
        progress.set_run_dir(None)
        status.stop()
    progress.report(1, 2, 3.0)  # no run directory: nothing written, no error
    assert progress.read(tmp_path / "missing") is None


def test_a_run_reports_its_steps_to_the_bar(write_suite, tmp_path: Path) -> None:
    head = "name: prog\nmatrix:\n  model: [builtin:tiny-gpt2]\n  method: [lora]\n  task: [synthetic-lm]\n"
    # 400 steps (a few seconds): the bar polls progress files once a second, and a 6-step run
    # finished before the first poll on an idle machine.
    suite = write_suite(head + TINY_TRAIN.replace("steps: 6", "steps: 400\n  log_every: 1"))
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tiny-gpt2/lora-r8/fp32/synthetic-lm/s0: step " in proc.stderr and ", loss " in proc.stderr
    assert not list(out.glob("runs/*/progress.json"))  # removed once the record is written
