"""Per-run isolation overhead of lorabench's executor, versus a cold interpreter per run.

Prints the median and max wall time of a full round trip through the executor (fork a
run process from the warm forkserver, send a result back, reap it) and the cost of the
naive alternative (a fresh `python -c "import torch, transformers, peft"` per run).
Target (issue #2): median overhead <= 0.5 s per run. Run: `make benchmarks`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main(n: int = 20, cold_n: int = 3) -> None:
    from lorabench.execute import LocalExecutor

    ex = LocalExecutor()
    t0 = time.perf_counter()
    ex.noop()  # starts the forkserver, which pre-imports torch/transformers/peft once
    first = time.perf_counter() - t0
    times = []
    for _ in range(n):
        t = time.perf_counter()
        msg = ex.noop()
        times.append(time.perf_counter() - t)
        assert msg and "pid" in msg
    cold = []
    for _ in range(cold_n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, transformers, peft"], check=True)
        cold.append(time.perf_counter() - t)
    med, worst = statistics.median(times), max(times)
    cold_med = statistics.median(cold)
    print(f"forkserver start (one-off, pre-imports torch+transformers+peft): {first:.2f} s")
    print(f"isolation overhead per run (n={n}): median {med * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    print(f"cold interpreter + imports per run (n={cold_n}): median {cold_med:.2f} s")
    print(f"ratio cold/forkserver: {cold_med / med:.0f}x; target median <= 500 ms: {'met' if med <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
