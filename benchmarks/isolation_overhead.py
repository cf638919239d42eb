"""Per-run start-up cost of lorabench's executor, broken down, versus a cold interpreter per run.

A run's process is forked from a forkserver that has pre-imported everything GPU-free
(``lorabench.execute.preload``); the run then imports peft and bitsandbytes itself,
because on a CUDA machine importing them initialises CUDA and a CUDA-initialised server
cannot fork usable children. This prints:

- the forkserver's one-off start (the preload);
- a bare round trip through the executor (fork, send a result back, reap);
- a round trip that also does the run-side imports (``entry.RUN_IMPORTS``): what
  ``isolation_s`` is made of on CPU (plus ``cuda_init_s`` on a GPU);
- a cold ``python -c "import torch, transformers, peft"`` per run, the naive alternative.

Target (issue 7): median isolation per run <= 1 s. Run: `make benchmarks`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _timed(fn, n: int) -> tuple[list[float], list[dict]]:
    times, msgs = [], []
    for _ in range(n):
        t = time.perf_counter()
        msg = fn()
        times.append(time.perf_counter() - t)
        assert msg and "pid" in msg, msg
        msgs.append(msg)
    return times, msgs


def main(n: int = 10, cold_n: int = 3) -> None:
    from lorabench.execute.local import LocalExecutor

    ex = LocalExecutor()
    t0 = time.perf_counter()
    ex.noop()  # starts the forkserver, which runs the preload once
    first = time.perf_counter() - t0
    bare, _ = _timed(ex.noop, n)
    full, msgs = _timed(ex.imports_only, n)
    imports = [m["import_s"] for m in msgs]
    cold = []
    for _ in range(cold_n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, transformers, peft"], check=True)
        cold.append(time.perf_counter() - t)
    med = statistics.median
    print(f"forkserver start (one-off preload of torch, transformers, model code): {first:.2f} s")
    print(f"bare fork round trip (n={n}): median {med(bare) * 1000:.1f} ms, max {max(bare) * 1000:.1f} ms")
    print(
        f"fork + run-side imports of peft/bitsandbytes (n={n}): median {med(full):.2f} s, max {max(full):.2f} s "
        f"(of which imports: median {med(imports):.2f} s)"
    )
    print(f"cold interpreter + imports per run (n={cold_n}): median {med(cold):.2f} s")
    verdict = "met" if med(full) <= 1.0 else "MISSED"
    print(f"ratio cold/forked: {med(cold) / med(full):.0f}x; target median isolation <= 1 s on CPU: {verdict}")


if __name__ == "__main__":
    main()
