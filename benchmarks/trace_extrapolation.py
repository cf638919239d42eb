"""How long the traced estimate takes, how much memory it uses, and what depth extrapolation costs.

Prints, for the 1.1B llama shape (vocab 50,257, LoRA r16 on every projection, batch 8 x
512): the full 22-layer trace against the 2-and-4-layer extension; then wall time and
peak RSS of ``lorabench estimate --trace`` for the 7B llama shape (``config:llama-7b``)
and a 70B llama shape (80 layers, hidden 8192, MLP 28672, 64 heads, 8 KV heads), each in
a fresh process. Run::

    python benchmarks/trace_extrapolation.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shape_dir(root: Path, name: str, **changes: int) -> str:
    cfg = json.loads((REPO / "lorabench/models/configs" / name / "config.json").read_text())
    cfg.update(changes)
    out = root / f"{name}-{'-'.join(f'{k}{v}' for k, v in changes.items())}"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(cfg))
    return str(out)


def extrapolation(root: Path) -> None:
    sys.path.insert(0, str(REPO))
    from lorabench.accounting.trace import trace_model
    from lorabench.methods import METHODS

    path = shape_dir(root, "llama-1b", vocab_size=50257)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    opts = METHODS.get("lora").Options(alpha=32, dropout=0.0, target_modules=tuple(targets))
    for precision in ("bf16", "nf4"):
        kw = dict(rank=16, method_opts=opts, target_modules=targets)
        t0 = time.perf_counter()
        full = trace_model(path, "lora", precision, 8, 512, layers=22, **kw)
        t1 = time.perf_counter()
        ext = trace_model(path, "lora", precision, 8, 512, **kw)
        t2 = time.perf_counter()
        print(
            f"1.1B lora {precision}: full trace {full.allocated_bytes / 2**20:,.1f} MiB ({t1 - t0:.1f} s), "
            f"extended from 2 and 4 layers {ext.allocated_bytes / 2**20:,.1f} MiB ({t2 - t1:.1f} s), "
            f"ratio {ext.allocated_bytes / full.allocated_bytes:.4f}"
        )


def timed_cli(model: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lorabench", "estimate", model, "--trace", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode:
        print(f"{model}: failed: {proc.stderr.strip().splitlines()[-1:]}")
        return
    est = json.loads(proc.stdout)
    print(
        f"{model} {' '.join(args)}: traced {est['allocated_bytes'] / 2**30:,.2f} GiB in {wall:.1f} s wall, "
        f"peak RSS of the largest child so far {rss:,.0f} MiB"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extrapolation(root)
        common = ["--method", "lora", "--precision", "nf4", "--rank", "16"]
        timed_cli("config:llama-7b", *common, "--batch-size", "4", "--seq-len", "512")
        big = shape_dir(
            root,
            "llama-7b",
            hidden_size=8192,
            intermediate_size=28672,
            num_hidden_layers=80,
            num_attention_heads=64,
            num_key_value_heads=8,
        )
        timed_cli(big, *common, "--batch-size", "1", "--seq-len", "2048")


if __name__ == "__main__":
    main()
