"""A real tiny suite through the CLI: isolated runs, records, outputs, resume, failures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN, run_cli

pytestmark = pytest.mark.slow

RUNS_CSV_COLUMNS = {
    "run_id",
    "model",
    "method",
    "rank",
    "precision",
    "task",
    "seed",
    "status",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "tokens_per_s",
    "samples_per_s",
    "train_s",
    "eval_s",
    "adapter_bytes",
    "peak_rss_train_mb",
    "peak_rss_eval_mb",
    "peak_allocated_train_mb",
    "peak_reserved_train_mb",
    "peak_nvml_train_mb",
    "perplexity",
    "token_accuracy",
    "eval_loss",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """Run full, lora and QLoRA on the tiny model once for the module's tests."""
    tmp = tmp_path_factory.mktemp("e2e")
    suite = tmp / "tiny.yaml"
    suite.write_text(
        """
name: tiny
matrix:
  - {model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [4], precision: [fp32, nf4], task: [synthetic-lm]}
seeds: [0]
"""
        + TINY_TRAIN
    )
    out = tmp / "results"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/record.json"))]


def test_every_run_has_a_complete_record(smoke_run: Path) -> None:
    recs = _records(smoke_run)
    assert len(recs) == 3
    for rec in recs:
        assert rec["status"] == "success", rec.get("error")
        assert set(rec) >= {"run_id", "spec", "metrics", "profile", "status", "error", "env", "created_at"}
        assert rec["resolved"]["seed_applied"] == rec["spec"]["seed"]
        env = rec["env"]
        for key in ("python", "torch", "transformers", "peft", "bitsandbytes", "device_name", "git_sha", "git_dirty"):
            assert key in env
        prof = rec["profile"]
        assert prof["trainable_params"] > 0 and prof["total_params"] >= prof["trainable_params"]
        assert prof["tokens_per_s"] > 0 and prof["samples_per_s"] > 0
        assert prof["timed_steps"] == rec["spec"]["train"]["steps"] - rec["spec"]["train"]["warmup_steps"]
        assert prof["adapter_bytes"] > 0
        mem = prof["memory_mb"]
        assert mem["train"]["rss"] > 0 and mem["eval"]["rss"] > 0
        assert mem["train"]["allocated"] is None  # CPU: CUDA figures are null, and the note says why
        assert any("cpu" in n for n in prof["notes"])
        # The memory prediction is stored beside the measurement; on CPU (host RSS) it is not compared.
        assert prof["predicted_peak_bytes"] > 0 and prof["predicted_method"] == "analytic"
        assert prof["measured_over_predicted"] is None and any("no measured/predicted" in n for n in prof["notes"])
        m = rec["metrics"]
        assert m["perplexity"] == pytest.approx(2.718281828 ** m["eval_loss"], rel=1e-9)
        assert 0 < m["token_accuracy"] <= 1
        preds = (smoke_run / "runs" / rec["run_id"] / "predictions.jsonl").read_text().splitlines()
        assert preds and {"id", "prediction", "reference"} <= set(json.loads(preds[0]))


def test_lora_trains_a_small_share_and_full_trains_all(smoke_run: Path) -> None:
    by_method = {(r["spec"]["method"], r["spec"]["precision"]): r["profile"] for r in _records(smoke_run)}
    assert by_method[("full", "fp32")]["trainable_pct"] == pytest.approx(100.0)
    lora, qlora = by_method[("lora", "fp32")], by_method[("lora", "nf4")]
    assert lora["trainable_pct"] < 10
    assert lora["trainable_params"] == qlora["trainable_params"]
    # peft's convention counts packed 4-bit weights at their unpacked size.
    assert lora["total_params"] == qlora["total_params"]
    assert lora["adapter_bytes"] < by_method[("full", "fp32")]["adapter_bytes"]


def test_outputs_exist_and_runs_csv_has_the_columns(smoke_run: Path) -> None:
    for name in ("runs.csv", "leaderboard.md", "leaderboard.csv", "report.md", "report.html", "suite.yaml"):
        assert (smoke_run / name).is_file(), name
    assert list((smoke_run / "plots").glob("memory_vs_perplexity_*.png"))
    with open(smoke_run / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert RUNS_CSV_COLUMNS <= set(rows[0])
    assert len(rows) == 3
    board = (smoke_run / "leaderboard.md").read_text()
    assert board.startswith("## synthetic-lm (sorted by perplexity, lower is better)") and "| lora " in board


def test_rerun_resumes_and_report_rebuilds_from_records(smoke_run: Path) -> None:
    before = {p: p.stat().st_mtime for p in (smoke_run / "runs").glob("*/record.json")}
    proc = run_cli("run", str(smoke_run / "suite.yaml"), "--out", str(smoke_run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "0 to run, 3 already recorded" in proc.stderr
    assert before == {p: p.stat().st_mtime for p in (smoke_run / "runs").glob("*/record.json")}
    (smoke_run / "leaderboard.md").unlink()
    proc = run_cli("report", str(smoke_run))
    assert proc.returncode == 0 and (smoke_run / "leaderboard.md").is_file()


def test_failures_become_rows(tmp_path: Path) -> None:
    """A diverging run, a timed-out run and an unreachable hub model each become a record."""
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        """
name: bad
tasks:
  lm: {type: causal-lm, data: {synthetic: facts}, n_train: 200, n_eval: 20}
matrix:
  - {model: [builtin:tiny-gpt2], method: [full], task: [lm]}
  - {model: [no-such-org/no-such-model], method: [lora], task: [lm]}
train: {steps: 12, batch_size: 4, lr: 1.0e+9, max_seq_len: 32, warmup_steps: 1, max_grad_norm: null,
        optimizer: sgd, log_every: 1}
execution: {threads: 2, timeout_s: 600}
"""
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    recs = {r["spec"]["model"]["name"]: r for r in _records(out)}
    assert recs["tiny-gpt2"]["status"] == "diverged", recs["tiny-gpt2"]["error"]
    assert "loss is" in recs["tiny-gpt2"]["error"]
    hub = recs["no-such-model"]
    assert hub["status"] == "failed"
    assert "HF_HUB_OFFLINE is set" in hub["error"] and "local directory" in hub["error"]
    strict = run_cli("run", str(suite), "--out", str(out), "--no-progress", "--strict")
    assert strict.returncode == 1
    assert "failed" in (out / "report.md").read_text()


def test_timeout_becomes_a_row(tmp_path: Path) -> None:
    suite = tmp_path / "slow.yaml"
    suite.write_text(
        """
name: slow
matrix: {model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}
train: {steps: 100000, batch_size: 4, max_seq_len: 32}
execution: {threads: 1, timeout_s: 3}
"""
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["status"] == "timeout" and "timeout_s=3" in rec["error"]


def test_ctrl_c_keeps_finished_records_and_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO, cli_env

    suite = tmp_path / "int.yaml"
    suite.write_text(
        """
name: int
tasks:
  lm: {type: causal-lm, data: {synthetic: facts}, n_train: 100, n_eval: 10}
matrix:
  - {model: [builtin:tiny-gpt2], method: [lora], rank: [2], task: [lm]}
  - {model: [builtin:tiny-gpt2], method: [full], task: [lm]}
train: {steps: 250, batch_size: 2, max_seq_len: 16, warmup_steps: 1}
execution: {threads: 1, timeout_s: 300}
"""
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorabench", "run", str(suite), "--out", str(out), "--no-progress"],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run started in the background (`make test &`) ignores
        # SIGINT, the CLI would inherit that, and Python installs no Ctrl-C handler then.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(out.glob("runs/*/record.json"))) < 1:
        time.sleep(0.2)
    assert list(out.glob("runs/*/record.json")), "first run never finished"
    time.sleep(0.5)  # the second run (250 steps, seconds) is in flight now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "resume" in err and "Traceback" not in err
    (rec,) = _records(out)
    assert rec["status"] == "success" and rec["spec"]["method"] == "lora"
    assert (out / "leaderboard.md").is_file()
