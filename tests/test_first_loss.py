"""Every method's logged loss is the task loss, measured alike.

Each method's first logged ``train_loss`` (the real training loop, one step) is the
base model's loss on that batch wherever the adapter starts as the identity. The
methods that do not start as the identity are listed with the reason. AdaLoRA's
orthogonal regulariser, which peft folds into ``outputs.loss``, is logged apart and
still optimised.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from lorabench.methods import METHODS
from lorabench.plan import expand
from lorabench.validate import parse_suite

# Methods whose adapter changes the model's output before any training step, and why.
NOT_IDENTITY = {
    "prompt-tuning": "virtual tokens are prepended to every sequence: the base sees a different input",
    "prefix-tuning": "learned key/value prefixes are attended to in every layer from the first step",
}

# peft's LoHa/LoKr wrap nn.Linear only (GPT-2's projections are Conv1D): they run on the tiny T5.
ON_T5 = ("loha", "lokr")

SUITE = """
name: first-loss
matrix:
  - {{model: [builtin:tiny-gpt2], method: [{gpt2}], precision: [fp32], task: [lm]}}
  - {{model: [builtin:tiny-t5], method: [{t5}], precision: [fp32], task: [sum]}}
tasks:
  lm: {{type: causal-lm, data: {{synthetic: facts}}, n_train: 40, n_eval: 8}}
  sum: {{type: summarization, data: {{synthetic: dialogues}}, prompt: "{{input}} <sep>", n_train: 8, n_eval: 4}}
train: {{steps: 1, batch_size: 4, max_seq_len: 32, warmup_steps: 0, lr: 1.0e-3}}
execution: {{threads: 1}}
"""


def no_dropout(model: Any) -> Any:
    """Dropout off everywhere: the base and adapted models must see the same computation."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def first_logged_loss(spec: Any, tmp_path: Path) -> tuple[float, Any]:
    """(the first train_loss the run logs, the training stats), through the pipeline's own steps."""
    from lorabench.run import pipeline
    from lorabench.run.train import total_steps

    pipeline.seed_everything(spec.seed)
    from lorabench.tasks import TASK_TYPES

    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    method = spec.method_cls()
    ctx = pipeline.RunContext(device="cpu", amp_dtype=None, seed=spec.seed)
    model, tokenizer, info = pipeline.load_model(spec, task, "cpu")
    data = pipeline.build_data(spec, task, tokenizer)
    mctx = spec.method_context(task.family, info["model_type"], total_steps(spec.train, len(data.train)))
    model = no_dropout(pipeline.apply_method(spec, method, model, mctx))
    stats = pipeline.train(spec, task, method, model, tokenizer, data, ctx)
    return stats.curve[0][1], stats


def base_loss(spec: Any) -> float:
    """The base model's loss on the run's first batch (the same seeded batch stream)."""
    from lorabench.run import pipeline
    from lorabench.run.train import batches
    from lorabench.tasks import TASK_TYPES

    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    model, tokenizer, _ = pipeline.load_model(spec, task, "cpu")
    data = pipeline.build_data(spec, task, tokenizer)
    batch = next(batches(data.train, spec.train.batch_size, spec.seed, lambda b: task.collate(b, tokenizer)))
    no_dropout(model).train()
    with torch.no_grad():
        return float(model(**batch).loss)


@pytest.fixture(scope="module")
def specs() -> dict[str, Any]:
    gpt2 = [m for m in METHODS.names() if m not in ON_T5]
    suite = parse_suite(SUITE.format(gpt2=", ".join(gpt2), t5=", ".join(ON_T5)), "first-loss.yaml")
    return {s.method: s for s in expand(suite)}


@pytest.fixture(scope="module")
def base(specs: dict[str, Any]) -> dict[str, float]:
    """The base model's first-batch loss per model (computed once for each)."""
    out: dict[str, float] = {}
    for spec in specs.values():
        if spec.model.name not in out:
            out[spec.model.name] = base_loss(spec)
    return out


@pytest.mark.parametrize("method", METHODS.names())
def test_first_logged_loss_is_the_base_models_loss(
    method: str, specs: dict[str, Any], base: dict[str, float], tmp_path: Path
) -> None:
    spec = specs[method]
    first, _ = first_logged_loss(spec, tmp_path)
    expected = base[spec.model.name]
    if method in NOT_IDENTITY:
        assert abs(first - expected) > 1e-4, f"{method} starts as the identity: drop it from NOT_IDENTITY"
        return
    # PiSSA re-factors W into a residual plus its top singular directions: equal up to fp32 rounding.
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)


def test_adalora_regulariser_is_logged_apart_and_still_optimised(specs: dict[str, Any], tmp_path: Path) -> None:
    from lorabench.methods.adalora import orthogonality

    spec = specs["adalora"]
    _, stats = first_logged_loss(spec, tmp_path)
    reg = stats.regularisers["orth_reg"]
    assert reg[0][0] == 0 and reg[0][1] > 0.1  # A and B start random: far from orthogonal

    # Task loss + weight x orthogonality is exactly what peft's own forward returns (the formula has not drifted).
    from lorabench.run import pipeline
    from lorabench.run.train import batches
    from lorabench.tasks import TASK_TYPES

    task = TASK_TYPES.get(spec.task_options.type)(spec.task, spec.task_options)
    method = spec.method_cls()
    model, tokenizer, _ = pipeline.load_model(spec, task, "cpu")
    data = pipeline.build_data(spec, task, tokenizer)
    model = no_dropout(pipeline.apply_method(spec, method, model, spec.method_context(task.family, "gpt2", 1)))
    batch = next(batches(data.train, 4, spec.seed, lambda b: task.collate(b, tokenizer)))
    with torch.no_grad():
        peft_loss = float(model(**batch).loss)
        task_loss = float(method.task_forward(model)(batch))
        weight = model.peft_config["default"].orth_reg_weight
        torch.testing.assert_close(peft_loss, task_loss + weight * float(orthogonality(model.base_model, "default")))
    assert peft_loss > task_loss + 0.05  # the regulariser is material: leaking it would show

    # Still optimised: one step with the regulariser moves lora_A differently than without it.
    def trained_a(weight: float) -> torch.Tensor:
        s = dataclasses.replace(spec, method_options=dataclasses.replace(spec.method_options, orth_reg_weight=weight))
        model_box: list[Any] = []
        real_apply = pipeline.apply_method

        def keep(*args: Any) -> Any:
            model_box.append(real_apply(*args))
            return model_box[-1]

        pipeline.apply_method = keep
        try:
            first_logged_loss(s, tmp_path)
        finally:
            pipeline.apply_method = real_apply
        return next(p for n, p in model_box[0].named_parameters() if "lora_A" in n).detach().clone()

    assert not torch.equal(trained_a(0.5), trained_a(0.0))


def test_adalora_schedule_follows_peft_example(specs: dict[str, Any], tmp_path: Path) -> None:
    """As peft's example loop: update_and_allocate after every optimizer step (0 .. T-1), total_step = T,
    tinit/tfinal from the fractions; at T - tfinal the budget is the target, `rank` x adapted matrices."""

    base = specs["adalora"]
    opts = dataclasses.replace(base.method_options, tinit_frac=0.25, tfinal_frac=0.25)
    spec = dataclasses.replace(base, method_options=opts, train=dataclasses.replace(base.train, steps=8))
    seen: list[int] = []
    real = type(spec.method_cls()).after_step
    kept: list[Any] = []

    def counting(self: Any, model: Any, step: int) -> None:
        seen.append(step)
        kept[:] = [model]
        real(self, model, step)

    cls = type(spec.method_cls())
    cls.after_step = counting  # type: ignore[method-assign]
    try:
        first_logged_loss(spec, tmp_path)
    finally:
        cls.after_step = real  # type: ignore[method-assign]
    assert seen == list(range(8))
    cfg = kept[0].peft_config["default"]
    assert (cfg.total_step, cfg.tinit, cfg.tfinal) == (8, 2, 2)
    layers = len(cfg.rank_pattern)
    assert sum(int(sum(v)) for v in cfg.rank_pattern.values()) == cfg.target_r * layers
