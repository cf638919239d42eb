"""Load time and peak memory of ``weights: random``, one fresh process per case.

    python benchmarks/random_weights_load.py [MODEL] [PRECISION ...]
    e.g. python benchmarks/random_weights_load.py config:llama-1b bf16 nf4

Each case runs ``lorabench.models.loading.load_model`` in its own interpreter and prints
``load_s`` (wall time of the load) and the process's peak RSS (ru_maxrss), plus peak CUDA
allocated memory on a GPU. Compare checkouts by running the same command with each on
PYTHONPATH. Numbers depend on the machine and its load; nothing here asserts a target.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from lorabench.models.loading import load_model
path, precision, device = sys.argv[1:4]
torch.manual_seed(0)
t = time.perf_counter()
net, _, info = load_model({"path": path, "weights": "random"}, "causal-lm", precision,
                          {"compute_dtype": "bf16", "double_quant": True}, device)
load_s = time.perf_counter() - t
out = {"model": path, "precision": precision, "device": device, "load_s": round(load_s, 2),
       "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
       "params": sum(p.numel() for p in net.parameters()),
       "quantized_layers": info.get("quantized_layers")}
if device == "cuda":
    out["peak_cuda_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
print(json.dumps(out))
"""


def main(argv: list[str]) -> None:
    model = argv[0] if argv else "config:llama-1b"
    precisions = argv[1:] or ["bf16", "nf4"]
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for precision in precisions:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, model, precision, device], capture_output=True, text=True, check=False
        )
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else None
        print(line or json.dumps({"model": model, "precision": precision, "error": proc.stderr[-800:]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
