"""Harness overhead: lorabench's training loop against a bare PyTorch loop doing the same work.

Both loops train the same model (loaded and prepared exactly as a run does: load,
k-bit preparation, method, fp32 trainable weights, gradient checkpointing) on the same
batches, at the same precision, with the same optimiser, clipping and schedule, in
one process. Repetitions alternate which loop goes first (ABBA), so drift in machine
load falls on both. The harness side is the real ``lorabench.run.train.train`` with
the run's memory sampler thread running, as in a run.

Prints ``overhead_ratio: X`` = median over repetitions of harness tokens/s ÷ bare
tokens/s (1.0 = no overhead), and the spread. Run: ``make perf`` (CPU, a built-in
model), or on a GPU with a shipped shape, e.g.::

    python benchmarks/perf_overhead.py --shape llama-7b --device cuda \\
        --precision bf16 --method lora --rank 16 --target-modules all-linear --batch-size 4 --seq-len 512

``--profile`` also prints where the harness's host time goes (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import statistics
import time
from typing import Any


def build_spec(args: argparse.Namespace) -> Any:
    """One RunSpec through the real suite parser and planner (so defaults match a run)."""
    from lorabench.plan import expand
    from lorabench.validate import parse_suite

    model: dict[str, Any] = {"path": args.model, "weights": args.weights}
    if args.target_modules:
        model["target_modules"] = args.target_modules.split(",")
    if args.attn_implementation:
        model["attn_implementation"] = args.attn_implementation
    matrix: dict[str, Any] = {"model": ["m"], "method": [args.method], "precision": [args.precision]}
    matrix["task"] = [getattr(args, "task", "synthetic-lm")]
    if args.rank:
        matrix["rank"] = [args.rank]
    suite = {
        "name": "perf",
        "models": {"m": model},
        "matrix": matrix,
        "train": {
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "batch_size": args.batch_size,
            "max_seq_len": args.seq_len,
            "lr": 1e-4,
            "grad_checkpointing": args.grad_checkpointing,
            "log_every": args.log_every,
        },
        "execution": {"device": args.device, "threads": args.threads},
    }
    if args.compile:  # only when asked, so the script also runs against older checkouts
        suite["execution"]["compile"] = True
    return expand(parse_suite(json.dumps(suite), "<perf_overhead>"))[0]


def prepare(spec: Any) -> tuple[Any, Any, Any, Any]:
    """(model, task, ctx, device): the same setup steps as ``run_point``."""
    import torch

    from lorabench.models.loading import load_model
    from lorabench.run.pipeline import RunContext, amp_dtype, apply_method, seed_everything
    from lorabench.tasks import TASK_TYPES
    from lorabench.vocab import resolve_device

    if spec.execution.threads:
        torch.set_num_threads(spec.execution.threads)
    device = resolve_device(spec.execution.device)
    seed_everything(0)
    task = TASK_TYPES.get(spec.task_options["type"])(spec.task, spec.task_options)
    model, _tok, info = load_model(
        spec.model, task.family, spec.precision, spec.quantization, device, task.model_kwargs()
    )
    mctx = spec.method_context(task.family, info["model_type"], spec.train.steps)
    model = apply_method(spec, spec.method_cls(), model, mctx)
    ctx = RunContext(device=device, amp_dtype=amp_dtype(spec, device), seed=0)
    return model, task, ctx, device


def make_rows(vocab: int, n: int, seq_len: int) -> list[dict[str, Any]]:
    """Packed causal-LM rows of random token ids, as the causal-LM task produces them."""
    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (n, seq_len), generator=gen).tolist()
    return [{"input_ids": r, "attention_mask": [1] * seq_len, "labels": list(r)} for r in ids]


def bare_loop(model: Any, rows: list[dict[str, Any]], cfg: Any, ctx: Any) -> float:
    """The same work written plainly: tokens/s over the steps after warm-up."""
    import torch

    from lorabench.run.train import lr_lambda

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.schedule, cfg.lr_warmup_steps, cfg.steps))
    bs = cfg.batch_size
    data = {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}  # collated once, up front
    amp = torch.autocast(ctx.device, dtype=ctx.amp_dtype) if ctx.amp_dtype else contextlib.nullcontext()
    model.train()
    tokens = 0
    t0 = time.perf_counter()
    losses = []
    for step in range(cfg.steps):
        if step == cfg.warmup_steps:
            ctx.sync()
            t0 = time.perf_counter()
        i = (step * bs) % (len(rows) - bs + 1)
        batch = {k: v[i : i + bs].to(ctx.device, non_blocking=True) for k, v in data.items()}
        with amp:
            loss = model(**batch).loss
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if step >= cfg.warmup_steps:
            tokens += bs * len(rows[0]["input_ids"])
    ctx.sync()
    elapsed = time.perf_counter() - t0
    torch.stack(losses).sum().item()  # the one sync a bare loop needs to see its loss
    return tokens / elapsed


def harness_loop(
    model: Any, task: Any, rows: list[dict[str, Any]], spec: Any, ctx: Any, monitor: bool, prof: Any
) -> float:
    """lorabench's own loop, with the run's memory sampler thread going."""
    from lorabench.run.profile import MemoryMonitor
    from lorabench.run.train import train

    mon = MemoryMonitor(ctx.device, spec.execution.memory_sample_s) if monitor else None
    try:
        with mon.track() if mon else contextlib.nullcontext(), prof or contextlib.nullcontext():
            stats = train(model, task, rows, None, spec.train, ctx)
    finally:
        if mon:
            mon.close()
    return float(stats.tokens_per_s or 0.0)


class _Collate:
    """The causal-LM task, with the tokenizer's pad id bound (what ``train`` passes it)."""

    def __init__(self, task: Any, pad_id: int) -> None:
        self.task, self.pad_id = task, pad_id

    def collate(self, rows: list[dict[str, Any]], _tokenizer: Any) -> dict[str, Any]:
        from lorabench.data.batching import pad_batch

        return pad_batch(rows, self.pad_id)

    def count_tokens(self, batch: dict[str, Any]) -> int:
        return self.task.count_tokens(batch)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="builtin:tiny-gpt2", help="builtin:NAME or a directory with config.json")
    p.add_argument("--weights", default="pretrained", choices=["pretrained", "random"])
    p.add_argument(
        "--shape",
        choices=["gpt2-124m", "llama-1.1b", "llama-7b"],
        help="a shipped shape with random weights (overrides --model/--weights; see estimate_vs_measured.py)",
    )
    p.add_argument("--method", default="lora")
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--target-modules", help="comma-separated, or all-linear")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8", "nf4", "fp4"])
    p.add_argument("--attn-implementation", choices=["eager", "sdpa", "flash_attention_2"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (both loops)")
    p.add_argument("--no-monitor", action="store_true", help="leave the memory sampler thread out")
    p.add_argument("--profile", action="store_true", help="cProfile one harness repetition, print the top")
    args = p.parse_args(argv)
    if args.shape:
        import sys
        import tempfile
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).parent))
        from estimate_vs_measured import shape_dir

        args.model = shape_dir(args.shape, Path(tempfile.mkdtemp(prefix="lorabench-shapes-")))
        args.weights = "random"

    spec = build_spec(args)
    model, task, ctx, device = prepare(spec)
    if args.compile:
        from lorabench.run.perf import compile_model

        model = compile_model(model)
    vocab = int(model.config.vocab_size)
    rows = make_rows(vocab, max(64, args.batch_size * 8), args.seq_len)
    harness_task = _Collate(task, 0)
    ratios, h_all, b_all = [], [], []
    for rep in range(args.reps):
        order = ("h", "b") if rep % 2 == 0 else ("b", "h")
        result = {}
        for side in order:
            if side == "h":
                result["h"] = harness_loop(model, harness_task, rows, spec, ctx, not args.no_monitor, None)
            else:
                result["b"] = bare_loop(model, rows, spec.train, ctx)
        h_all.append(result["h"])
        b_all.append(result["b"])
        ratios.append(result["h"] / result["b"])
        print(f"rep {rep}: harness {result['h']:,.0f} tok/s, bare {result['b']:,.0f} tok/s, ratio {ratios[-1]:.3f}")
    print(
        f"device: {device}; model {args.model} ({args.weights}), {args.method} at {args.precision}, "
        f"batch {args.batch_size} x seq {args.seq_len}, {args.steps} steps ({args.warmup} warm-up), "
        f"{args.reps} repetitions, memory sampler {'off' if args.no_monitor else 'on'}"
    )
    print(f"harness tokens/s median {statistics.median(h_all):,.0f}; bare median {statistics.median(b_all):,.0f}")
    print(f"overhead_ratio: {statistics.median(ratios):.3f}  (min {min(ratios):.3f}, max {max(ratios):.3f})")
    if args.profile:
        prof = cProfile.Profile()
        harness_loop(model, harness_task, rows, spec, ctx, not args.no_monitor, prof)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        print(buf.getvalue())


if __name__ == "__main__":
    main()
