"""Sanity flags: each computed on constructed inputs, and one earned by a real run."""

from __future__ import annotations

import json
from pathlib import Path

from lorabench.sanity import FLAG_MEANINGS, compute_flags, did_not_learn, empty_generations, single_class
from tests.conftest import run_cli


def curve(losses: list[float]) -> list[list[float]]:
    return [[i, loss, 1e-3] for i, loss in enumerate(losses)]


def test_did_not_learn_compares_the_first_and_last_tenth() -> None:
    falling = [2.0] * 10 + [1.0] * 80 + [0.5] * 10
    flat = [0.69, 0.70, 0.71, 0.69] * 25
    assert not did_not_learn(curve(falling))
    assert did_not_learn(curve(flat))
    assert did_not_learn(curve([1.0] * 90 + [0.99] * 10))  # 1% lower: below the 2% margin
    assert not did_not_learn(curve([1.0] * 90 + [0.97] * 10))
    assert did_not_learn(curve([0.5] * 10 + [0.6] * 90))  # rose
    assert did_not_learn(curve([0.7]))  # one step cannot show learning
    assert did_not_learn([])


def test_single_class_needs_several_reference_classes() -> None:
    rows = [{"prediction": 1, "reference": r} for r in (0, 1, 1, 0)]
    assert single_class(rows)
    assert not single_class([{"prediction": r, "reference": r} for r in (0, 1, 1, 0)])
    assert not single_class([{"prediction": 1, "reference": 1}] * 4)  # one class in the data: nothing else to say


def test_empty_generations_over_half() -> None:
    rows = [{"prediction": p, "reference": "x"} for p in ("", "  ", "a plan", "")]
    assert empty_generations(rows)
    assert not empty_generations([*rows[1:3], {"prediction": "ok", "reference": "x"}])  # half empty: not over half


def test_compute_flags_by_task_type() -> None:
    flat = curve([0.7] * 20)
    one_class = [{"prediction": 0, "reference": r} for r in (0, 1)]
    flags, details = compute_flags("classification", flat, one_class)
    assert flags == ["did_not_learn", "single_class"]
    assert details["predicted_classes"] == 1
    assert compute_flags("summarization", curve([3.0] * 10 + [1.0] * 10), [{"prediction": "", "reference": "a"}])[
        0
    ] == ["empty_generations"]
    assert compute_flags("causal-lm", curve([3.0] * 10 + [1.0] * 10), [])[0] == []
    assert set(FLAG_MEANINGS) == {"did_not_learn", "single_class", "empty_generations"}


def test_a_run_at_zero_learning_rate_is_flagged(write_suite, tmp_path: Path) -> None:
    # lr 1e-12: the weights do not move, so the loss cannot fall; a sound run beside it
    # (same data, a real rate) is not flagged.
    path = write_suite(
        """
        name: flags
        matrix:
          model: [builtin:tiny-gpt2]
          method: [lora]
          task: [synthetic-lm]
        methods:
          lora:
            train: {lr: 1.0e-12}
        include:
          - {model: [builtin:tiny-gpt2], method: [full], task: [synthetic-lm]}
        train: {steps: 20, batch_size: 4, lr: 3.0e-3, max_seq_len: 32, warmup_steps: 2, log_every: 1}
        eval: {batch_size: 16, max_batches: 1}
        execution: {threads: 1, timeout_s: 300, keep_adapter: false}
        """
    )
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    recs = {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json")))}
    assert recs["lora"]["status"] == recs["full"]["status"] == "success"
    assert recs["lora"]["flags"] == ["did_not_learn"]
    assert recs["full"]["flags"] == []
    sanity = recs["full"]["resolved"]["sanity"]
    assert sanity["loss_last_window"] < sanity["loss_first_window"]
