"""`lorabench estimate` against measured peak memory, one fresh process per row.

GPU (the default, ``--device cuda``): a grid of shapes with random weights (GPT-2
124M, a ~1.1B llama shape, a 7B llama shape) × {full bf16, LoRA bf16, LoRA int8,
QLoRA nf4} × seq {512, 2048} × {without, with gradient checkpointing}; LoRA r16 on
every linear layer, AdamW, batch 4 at seq 512 and 1 at 2048. Each row loads and
prepares the model exactly as a run does, trains a few steps through lorabench's own
loop, and reads ``torch.cuda.max_memory_allocated`` over the training phase; the
estimate's ``allocated_bytes`` is the matching figure (it leaves the CUDA context out),
and so is the traced estimate's (``lorabench estimate --trace``), computed in the same
process before the model is loaded.

CPU (``--device cpu``): the built-in models and the GPT-2 124M shape, where the
comparison is with the growth of peak RSS (VmHWM) from just before the model is loaded
to the end of training; RSS also holds allocator slack and library buffers (tens of
MiB), which dominate at the built-in models' size.

Writes ``results/estimate_vs_measured/<device>.md`` and ``.json``. Run::

    python benchmarks/estimate_vs_measured.py               # on a CUDA machine
    python benchmarks/estimate_vs_measured.py --device cpu  # built-in models
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
SHAPES: dict[str, dict[str, Any]] = {
    "gpt2-124m": {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
        "n_positions": 2048,
        "vocab_size": 50257,
    },
    # TinyLlama-1.1B's shape (grouped-query attention, 4 key/value heads).
    "llama-1.1b": {
        **LLAMA,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
    },
    # Llama-2-7B's shape.
    "llama-7b": {
        **LLAMA,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
    },
}
CONFIGS = [("full", "bf16"), ("lora", "bf16"), ("lora", "int8"), ("lora", "nf4")]
CPU_MODELS = ["builtin:tiny-gpt2", "builtin:tiny-bert"]


def shape_dir(name: str, root: Path) -> str:
    """A directory with the shape's config.json and a tokenizer (the run path loads one).

    The tokenizer is the built-in GPT-2's; the rows are random ids over the model's own
    vocabulary, so it only supplies a pad id.
    """
    from lorabench.models.loading import resolve_path

    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(SHAPES[name]))
    tok = Path(resolve_path("builtin:tiny-gpt2"))
    for f in tok.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(f, d / f.name)
    return str(d)


def measure(row: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: estimate, then load, train ``steps`` and read the peaks."""
    import torch

    from lorabench.accounting.estimate import estimate_model
    from lorabench.run.profile import MemoryMonitor
    from lorabench.run.train import train

    sys.path.insert(0, str(Path(__file__).parent))
    from perf_overhead import _Collate, build_spec, make_rows, prepare

    args = argparse.Namespace(**row["args"])
    spec = build_spec(args)
    device = "cuda" if args.device == "cuda" else "cpu"
    family = spec.task_options["type"]
    task_type = {"causal-lm": "causal-lm", "classification": "seq-cls"}[family]
    # The same shape for both predictions, so they differ only in how they count.
    shape: dict[str, Any] = dict(
        rank=args.rank,
        target_modules=args.target_modules.split(",") if args.target_modules else None,
        grad_checkpointing=args.grad_checkpointing,
        device=device,
        task_type=task_type,
    )
    point = (args.model, args.method, args.precision, args.batch_size, args.seq_len)
    est = estimate_model(*point, **shape)
    out: dict[str, Any] = {"estimate_allocated": est.allocated_bytes, "breakdown": est.breakdown}
    from lorabench.accounting.trace import Untraceable, trace_model

    try:  # the traced step on fake tensors, before anything is allocated for real
        traced = trace_model(*point, **shape)
        out["trace_allocated"] = traced.allocated_bytes
    except Untraceable as exc:
        out["trace_allocated"] = None
        out["trace_note"] = str(exc)
    import psutil

    base_rss = int(psutil.Process().memory_info().rss)  # libraries imported, model not yet loaded
    monitor = MemoryMonitor(device)
    try:
        with monitor.track() as phase:
            try:
                model, task, ctx, _ = prepare(spec)
                rows = make_rows(int(model.config.vocab_size), args.batch_size * args.steps, args.seq_len)
                if family == "classification":
                    rows = [
                        {"input_ids": r["input_ids"], "attention_mask": r["attention_mask"], "labels": 0} for r in rows
                    ]
                train(model, _Collate(task, 0), rows, None, spec.train, ctx)
            except torch.cuda.OutOfMemoryError:
                out["status"] = "oom"
                return out
        peaks = phase.memory.to_dict()
    finally:
        monitor.close()
    out["status"] = "ok"
    out["measured_allocated"] = None if peaks["allocated"] is None else int(peaks["allocated"] * 2**20)
    out["measured_rss_growth"] = int(peaks["rss"] * 2**20) - base_rss
    return out


def run_row(row: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(row)], capture_output=True, text=True, timeout=1800
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"status": "failed", "error": proc.stderr.strip().splitlines()[-1:] or [""]}
    return json.loads(lines[-1])


def grid(device: str, root: Path, steps: int) -> list[dict[str, Any]]:
    base = {"weights": "random", "attn_implementation": None, "warmup": 1, "log_every": 10, "threads": None}
    base.update(device=device, compile=False, steps=steps, task="synthetic-lm")
    rows = []
    if device == "cpu":
        for model in CPU_MODELS:
            for method, prec in (("full", "fp32"), ("lora", "fp32")):
                for gc in (False, True):
                    args = {**base, "model": model, "weights": "pretrained", "method": method, "precision": prec}
                    args.update(rank=8 if method == "lora" else None, target_modules=None, threads=2)
                    args.update(batch_size=8, seq_len=64, grad_checkpointing=gc)
                    args["task"] = "synthetic-sentiment" if "bert" in model else "synthetic-lm"
                    rows.append({"label": f"{model} {method} {prec}", "args": args})
        # A real size on CPU, where tensors rather than library buffers dominate RSS.
        path = shape_dir("gpt2-124m", root)
        for method in ("full", "lora"):
            for gc in (False, True):
                args = {**base, "model": path, "method": method, "precision": "fp32", "threads": 2}
                args.update(rank=16 if method == "lora" else None, target_modules=None)
                args.update(batch_size=2, seq_len=256, grad_checkpointing=gc)
                rows.append({"label": f"gpt2-124m {method} fp32", "args": args})
        return rows
    for shape in SHAPES:
        path = shape_dir(shape, root)
        for method, prec in CONFIGS:
            for seq in (512, 2048):
                for gc in (False, True):
                    args = {**base, "model": path, "method": method, "precision": prec}
                    args.update(rank=16 if method == "lora" else None)
                    args.update(target_modules="all-linear" if method == "lora" else None)
                    args.update(batch_size=4 if seq == 512 else 1, seq_len=seq, grad_checkpointing=gc)
                    rows.append({"label": f"{shape} {method} {prec}", "args": args})
    return rows


def table(rows: list[dict[str, Any]], device: str) -> str:
    what = "max_memory_allocated" if device == "cuda" else "peak RSS growth"
    lines = [
        f"| config | batch x seq | grad ckpt | estimate MiB | trace MiB | measured MiB ({what}) "
        "| estimate / measured | trace / measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, res = r["args"], r["result"]
        est = res.get("estimate_allocated")
        meas = res.get("measured_allocated") if device == "cuda" else res.get("measured_rss_growth")
        tr = res.get("trace_allocated")
        ratio = f"{est / meas:.2f}" if est and meas else res.get("status", "")
        t_ratio = f"{tr / meas:.2f}" if tr and meas else res.get("status", "")
        lines.append(
            f"| {r['label']} | {a['batch_size']} x {a['seq_len']} | {'yes' if a['grad_checkpointing'] else 'no'} | "
            f"{'' if est is None else f'{est / 2**20:,.1f}'} | {'' if tr is None else f'{tr / 2**20:,.1f}'} "
            f"| {'' if meas is None else f'{meas / 2**20:,.1f}'} | {ratio} | {t_ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="results/estimate_vs_measured")
    p.add_argument("--only", help="run only rows whose label contains this text")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    with tempfile.TemporaryDirectory(prefix="lorabench-shapes-") as tmp:
        rows = [r for r in grid(args.device, Path(tmp), args.steps) if not args.only or args.only in r["label"]]
        for r in rows:
            r["result"] = run_row(r)
            print(r["label"], r["args"]["seq_len"], r["args"]["grad_checkpointing"], r["result"].get("status"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = table(rows, args.device)
    (out / f"{args.device}.md").write_text(md)
    (out / f"{args.device}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(md)
    print(f"written: {out / (args.device + '.md')}")
    os.sync()


if __name__ == "__main__":
    main()
