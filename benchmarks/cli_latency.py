"""Wall time of the config-only commands (`params`, `estimate`), each in a fresh interpreter.

`lorabench params` and `lorabench estimate` answer from a model's config: they build it on
the meta device and apply the method with peft, so they need torch, transformers and peft,
and nothing else. Each command here runs ``--repeat`` times as a new process (what a user
types); the script prints the median wall time per command, and which of the heavy
libraries the command imported (from one extra ``python -X importtime`` run). CPU time
(user + system) is printed beside the wall time: on a shared machine it moves less.

Target (issue 17): a config-only answer in a few seconds; ``bitsandbytes`` (about 1 s of
imports, most of it torch's compiler stack that its kernels pull in) only for a k-bit
precision. The ``--help`` line is the floor: the interpreter and lorabench's own modules.

Run: ``python benchmarks/cli_latency.py [--repeat N]``. Timings on a loaded machine are
slower for every command alike; compare lines of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "torch._inductor.compile_fx")

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "params llama-7b lora": ["params", "config:llama-7b", "--method", "lora"],
    "params llama-7b lora nf4": ["params", "config:llama-7b", "--method", "lora", "--precision", "nf4"],
    "estimate llama-7b lora bf16": [
        "estimate",
        "config:llama-7b",
        "--method",
        "lora",
        "--precision",
        "bf16",
        "--batch-size",
        "1",
        "--seq-len",
        "2048",
    ],
    "estimate llama-7b qlora nf4": [
        "estimate",
        "config:llama-7b",
        "--method",
        "lora",
        "--precision",
        "nf4",
        "--batch-size",
        "1",
        "--seq-len",
        "2048",
    ],
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _timed(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one fresh process: CPU time (user + system) varies less with the load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lorabench", *args], check=True, capture_output=True, env=_env())
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _imported(args: list[str]) -> list[str]:
    """The heavy modules one run of the command imports (python -X importtime on stderr)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lorabench", *args],
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
    )
    names = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        # A module made absent (lorabench.accounting.slim) still shows, as a failed import of a few us.
        if int(cumulative) > 1000:
            names.add(name.strip())
    return [m for m in HEAVY if m in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per command (median printed)")
    args = parser.parse_args()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"load average at start: {load:.1f} (on {os.cpu_count()} CPUs)")
    for name, argv in COMMANDS.items():
        walls, cpus = zip(*(_timed(argv) for _ in range(args.repeat)), strict=True)
        heavy = ", ".join(_imported(argv)) or "none"
        print(
            f"{name:<28} wall median {statistics.median(walls):5.2f} s (min {min(walls):5.2f}), "
            f"CPU median {statistics.median(cpus):5.2f} s, n={args.repeat}; imports: {heavy}"
        )


if __name__ == "__main__":
    main()
