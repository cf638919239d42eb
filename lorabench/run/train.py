"""The training loop, written out in one place (no Trainer), nanoGPT/torchtune style.

Warm-up steps run first and are excluded from throughput; the timed stretch is
bracketed by device syncs. Divergence (a non-finite loss) stops the run with status
``diverged`` instead of training on garbage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lorabench.run import progress
from lorabench.run.distributed import loss_items, slice_for
from lorabench.run.profile import StepClock
from lorabench.suite.schema import TrainSettings


class Diverged(RuntimeError):
    """The loss, or an evaluation metric, became NaN or inf."""


def check_finite(metrics: dict[str, float]) -> None:
    """Raise :class:`Diverged` when a metric is NaN or infinite: a number no leaderboard can average."""
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise Diverged("eval metric " + ", ".join(f"{k} is {v}" for k, v in bad.items()))


@dataclass
class TrainStats:
    steps: int
    train_s: float
    timed_s: float
    timed_steps: int
    tokens: int
    samples: int
    curve: list[list[float]] = field(default_factory=list)  # [step, task loss, lr]
    # A method's regularisers (AdaLoRA's orth_reg), weighted, per logged step: {name: [[step, value], ...]}
    regularisers: dict[str, list[list[float]]] = field(default_factory=dict)
    eval_curve: list[dict[str, float]] = field(default_factory=list)  # {"step": s, metric: value, ...}
    eval_s: float = 0.0  # periodic evaluation time, excluded from train_s and timed_s
    step_s: list[float] = field(default_factory=list)  # seconds per timed step (warm-up and eval excluded)
    energy_j: float | None = None  # joules over training, periodic evaluation excluded (None: no counter)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.timed_s if self.timed_s > 0 and self.timed_steps else None

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.timed_s if self.timed_s > 0 and self.timed_steps else None


def lr_lambda(schedule: str, warmup: int, total: int) -> Any:
    """Multiplier on the base lr at optimiser step ``s``: linear warm-up, then the schedule."""

    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def total_steps(cfg: TrainSettings, n_rows: int) -> int:
    if cfg.steps is not None:
        return int(cfg.steps)
    per_epoch = math.ceil(n_rows / (cfg.batch_size * cfg.grad_accum))
    return max(1, math.ceil(cfg.epochs * per_epoch))


def batches(
    rows: list[dict[str, Any]], batch_size: int, seed: int, collate: Any, rank: int = 0, world: int = 1
) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches; each epoch is a fresh permutation from a seeded generator.

    With ``world`` > 1 every rank draws the same global batches and collates only its
    own slice of each (``distributed.slice_for``).
    """
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(rows), generator=gen).tolist()
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            chosen = order[i : i + batch_size]
            if world > 1:
                chosen = slice_for(chosen, rank, world)
            yield collate([rows[j] for j in chosen])


def train(
    model: Any,
    task: Any,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    cfg: TrainSettings,
    ctx: Any,
    after_step: Callable[[int], None] | None = None,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int | None = None,
    forward: Callable[[dict[str, Any]], torch.Tensor] | None = None,
    regularisers: Callable[[], dict[str, torch.Tensor]] | None = None,
    energy: Any = None,
    world: Any = None,
) -> TrainStats:
    """Train ``model`` on ``rows`` per ``cfg``; returns timing, throughput and the loss curve.

    ``after_step(step)`` runs after each optimizer step while gradients still exist (a
    method's own bookkeeping, e.g. AdaLoRA's budget). ``evaluate()`` runs every
    ``eval_every`` steps and after the last one for a quality curve; its time is
    excluded from every training timer. ``forward(batch)``, when given, computes the loss
    instead of ``model(**batch).loss`` (e.g. a chunked cross-entropy); it is the task
    loss. ``regularisers()`` gives a method's extra loss terms: they are optimised with the
    task loss but logged apart, so ``curve`` is the task loss for every method. ``world`` (a
    ``distributed.World``) makes this one rank of several: its slice of each global
    batch, its loss weighted by its share of the batch's loss items, the logged loss
    and the token counts summed over the ranks.

    Each periodic evaluation point also records what training had cost up to it, warm-up
    included and evaluation excluded: ``train_tokens``, ``train_s`` and, with an
    ``energy`` meter (:class:`lorabench.run.energy.EnergyMeter`) that has a source,
    ``train_j``. Time-to-target reads these.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the method left no trainable parameters")
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_steps = total_steps(cfg, len(rows))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.schedule, cfg.lr_warmup_steps, n_steps))
    # fp16 needs loss scaling on CUDA; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler("cuda", enabled=ctx.device == "cuda" and ctx.amp_dtype == torch.float16)
    ranks = world.size if world is not None else 1
    stream = batches(
        rows, cfg.batch_size, ctx.seed, lambda b: task.collate(b, tokenizer), world.rank if world else 0, ranks
    )
    inner = getattr(model, "module", model)  # DDP's wrapper holds the model as .module
    encoder_decoder = bool(getattr(getattr(inner, "config", None), "is_encoder_decoder", False))
    warmup = min(cfg.warmup_steps, n_steps - 1)
    # Pinned host memory makes the copy truly asynchronous (from pageable memory
    # `non_blocking` is a synchronous copy); on CPU the batch is used as it is.
    pin = ctx.device == "cuda"
    model.train()
    pending: list[tuple[int, torch.Tensor, float, dict[str, torch.Tensor]]] = []
    curve: list[list[float]] = []
    reg_curve: dict[str, list[list[float]]] = {}
    tokens = samples = 0
    all_tokens = 0  # warm-up included: the cost of reaching a quality counts every step
    eval_j = 0.0
    eval_curve: list[dict[str, float]] = []
    eval_s = 0.0
    eval_s_at_timed = 0.0
    clock = StepClock(ctx.device)
    if energy is not None:
        energy.start()
    t0 = time.perf_counter()
    t_timed = t0

    def flush() -> None:
        # One .item() per logged step keeps host-device syncs off the hot path.
        if world is not None and pending:  # the global batch's loss: one all-reduce per flush
            means = world.mean_over_ranks(torch.stack([t for _, t, _, _ in pending]))
            pending[:] = [(s, means[i], lr, regs) for i, (s, _, lr, regs) in enumerate(pending)]
        for step, loss_t, lr, regs in pending:
            loss = float(loss_t)
            if not math.isfinite(loss):
                raise Diverged(f"loss is {loss} at step {step}")
            curve.append([step, round(loss, 6), lr])
            for name, value_t in regs.items():
                value = float(value_t)
                if not math.isfinite(value):
                    raise Diverged(f"regulariser {name} is {value} at step {step}")
                reg_curve.setdefault(name, []).append([step, round(value, 6)])
        if curve:
            progress.report(int(curve[-1][0]) + 1, n_steps, curve[-1][1])  # the driver's status line
        pending.clear()

    for step in range(n_steps):
        if step == warmup:
            ctx.sync()  # note: CPU-GPU sync, so the timed stretch starts with an idle device
            t_timed = time.perf_counter()
            eval_s_at_timed = eval_s
            clock.start()
        step_loss = torch.zeros((), device=ctx.device)
        step_regs: dict[str, torch.Tensor] = {}
        for _ in range(cfg.grad_accum):
            host = next(stream)
            n_tok = task.count_tokens(host)
            all_tokens += n_tok
            if step >= warmup:
                # Counted on the host copy: on the device, int(mask.sum()) would be a
                # CPU-GPU sync every micro-step, stalling the queue while we collate.
                tokens += n_tok
                samples += int(host["input_ids"].shape[0])
            if world is not None:
                # The ranks average gradients; weighting each rank's mean loss by its share of
                # the global batch's loss items makes that average the global batch's gradient.
                mine = loss_items(host, encoder_decoder)
                (total,) = world.all_sum([float(mine)])
                share = mine * world.size / total if total else 0.0
            batch = {k: v.pin_memory().to(ctx.device, non_blocking=True) if pin else v for k, v in host.items()}
            with ctx.autocast():
                loss = forward(batch) if forward is not None else model(**batch).loss
                if world is not None:
                    loss = loss * share
                loss = loss / cfg.grad_accum
                regs = {k: v / cfg.grad_accum for k, v in (regularisers() if regularisers else {}).items()}
            scaler.scale(loss + sum(regs.values()) if regs else loss).backward()
            step_loss += loss.detach()
            for name, value in regs.items():
                step_regs[name] = step_regs.get(name, 0) + value.detach()
        scaler.unscale_(opt)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        if after_step is not None:
            after_step(step)
        lr_now = sched.get_last_lr()[0]
        sched.step()
        opt.zero_grad(set_to_none=True)
        pending.append((step, step_loss, lr_now, step_regs))
        if (step + 1) % cfg.log_every == 0 or step == n_steps - 1:
            flush()
        if step >= warmup:
            # Per-step times show the spread behind tokens/s on a shared machine; on GPU
            # they are stream events, so measuring them adds no sync (StepClock).
            clock.lap()
        if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or step == n_steps - 1):
            ctx.sync()
            t_eval = time.perf_counter()
            joules = energy.joules() if energy is not None else None
            seen = all_tokens if world is None else int(world.all_sum([float(all_tokens)])[0])  # every rank's
            cost: dict[str, float] = {"train_tokens": seen, "train_s": round(t_eval - t0 - eval_s, 6)}
            if joules is not None:
                cost["train_j"] = round(joules - eval_j, 3)
            model.eval()
            eval_curve.append({"step": step, **evaluate(), **cost})
            model.train()
            ctx.sync()
            eval_s += time.perf_counter() - t_eval
            if joules is not None:
                after = energy.joules()
                eval_j += (after - joules) if after is not None else 0.0
            if step >= warmup:
                clock.start()  # the evaluation is not part of the next step
    ctx.sync()
    t_end = time.perf_counter()
    total_j = energy.joules() if energy is not None else None
    flush()
    timed_steps = n_steps - warmup
    if world is not None:  # throughput is the whole run's: every rank's tokens in rank 0's timed stretch
        tokens, samples = (int(v) for v in world.all_sum([float(tokens), float(samples)]))
    return TrainStats(
        steps=n_steps,
        train_s=t_end - t0 - eval_s,
        timed_s=t_end - t_timed - (eval_s - eval_s_at_timed),
        timed_steps=timed_steps,
        tokens=tokens,
        samples=samples,
        curve=curve,
        regularisers=reg_curve,
        eval_curve=eval_curve,
        eval_s=eval_s,
        step_s=clock.seconds(),
        energy_j=None if total_j is None else total_j - eval_j,
    )
