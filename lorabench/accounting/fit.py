"""What fits on a GPU: ``lorabench fit MODEL --gpu-memory 24GiB --seq-len 2048``.

For each method and precision, with and without gradient checkpointing, the largest
batch size whose traced peak (``lorabench.accounting.trace``) fits the card. Memory is affine in
the batch size (weights, constants and optimizer state do not grow; activations,
logits and their temporaries grow with every sample), so two traces, at batch 1 and 2,
give the line; the batch it predicts is then traced to confirm it, and stepped down
until a trace fits where the line was optimistic.

What a card can give the allocator is less than its memory: ``fits`` requires

    traced allocated peak x (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= card memory

with the CUDA context (the analytic model's 512 MiB: context and kernels, never seen by
torch's allocator) and a 5% fragmentation allowance (the caching allocator reserves
whole segments; ``reserved`` exceeds ``allocated`` by a few percent in steady training,
more with varying sequence lengths).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lorabench.errors import UsageError
from lorabench.vocab import GPU_MEMORY_MIB, card_memory, gpu_budget, memory_size

GiB = 1024**3
MiB = 1024**2
FRAGMENTATION = 0.05
MAX_BATCH = 4096


@dataclass
class FitRow:
    """One method x precision x checkpointing answer (``--json`` prints these)."""

    method: str
    precision: str
    rank: int | None
    grad_checkpointing: bool
    fits: bool
    max_batch_size: int
    peak_bytes: int  # traced allocated peak + CUDA context, at max_batch_size (at batch 1 when nothing fits)
    traces: int
    note: str = ""


def parse_memory(text: str) -> int:
    """'24GiB', '80GB', '40960MiB', '24G' -> bytes (GB and G read as GiB, as cards are sold)."""
    found = memory_size(text)
    if found is None:
        raise UsageError(f"--gpu-memory {text!r}: expected a size such as 24GiB, 80GB or 40960MiB")
    return found


def gpu_memory(name: str) -> int:
    """Bytes of a known card; an unknown name lists the known ones."""
    found = card_memory(name)
    if found is None:
        raise UsageError(f"unknown GPU {name!r}; known: {', '.join(GPU_MEMORY_MIB)} (or give --gpu-memory)")
    return found


def budget_bytes(text: str) -> int:
    """A card name ("A100-40GB") or a size ("80GiB") -> bytes; a usage error names both forms."""
    try:
        return gpu_budget(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_methods(text: str) -> list[tuple[str, str]]:
    """'full,lora,lora@int8,lora@nf4' -> [(method, precision)]; no precision means bf16."""
    from lorabench.methods import METHODS
    from lorabench.vocab import PRECISIONS

    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        method, _, precision = item.partition("@")
        METHODS.get(method)  # unknown names: UsageError with a did-you-mean
        precision = precision or "bf16"
        if precision not in PRECISIONS:
            raise UsageError(f"--methods {item!r}: unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        out.append((method, precision))
    if not out:
        raise UsageError("--methods is empty")
    return out


def fits(allocated: int, budget: int) -> bool:
    from lorabench.accounting.estimate import CUDA_CONTEXT_BYTES

    return allocated * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= budget


def max_batch(trace: Any, budget: int, limit: int = MAX_BATCH) -> tuple[int, int, int]:
    """(largest batch that fits, its allocated peak, traces run); trace(b) -> allocated bytes.

    Affine in the batch: two traces give the line, the predicted batch is traced, and
    the answer moves down (or up) one trace at a time by bisection until it is confirmed.
    """
    seen: dict[int, int] = {}

    def peak(b: int) -> int:
        if b not in seen:
            seen[b] = trace(b)
        return seen[b]

    if not fits(peak(1), budget):
        return 0, peak(1), len(seen)
    from lorabench.accounting.estimate import CUDA_CONTEXT_BYTES

    slope = max(1, peak(2) - peak(1))
    room = (budget - CUDA_CONTEXT_BYTES) / (1 + FRAGMENTATION) - peak(1)
    guess = max(1, min(limit, 1 + int(room // slope)))
    lo, hi = 1, limit + 1  # fits at lo; does not fit at hi (hi past the limit counts as not fitting)
    # The line's answer and its neighbour first (two traces when the line is right), then bisection.
    for probe in (guess, guess + 1):
        if not lo < probe < hi:
            continue
        if fits(peak(probe), budget):
            lo = probe
        else:
            hi = probe
            break
    while hi - lo > 1:
        probe = (lo + hi) // 2
        if fits(peak(probe), budget):
            lo = probe
        else:
            hi = probe
    return lo, peak(lo), len(seen)


def fit(
    model: str,
    budget: int,
    seq_len: int,
    methods: list[tuple[str, str]],
    rank: int | None = None,
    optimizer: str = "adamw",
    attn: str | None = None,
) -> list[FitRow]:
    """Every (method, precision) x (no checkpointing, checkpointing) row for ``model`` on a card of ``budget`` bytes."""
    from lorabench.accounting.estimate import CUDA_CONTEXT_BYTES
    from lorabench.accounting.trace import Untraceable, trace_model
    from lorabench.methods import METHODS

    rows = []
    for method, precision in methods:
        cls = METHODS.get(method)
        r = cls.resolve_rank(rank)
        for gc in (False, True):

            def trace(
                b: int, method: str = method, precision: str = precision, gc: bool = gc, r: int | None = r
            ) -> int:
                est = trace_model(
                    model,
                    method,
                    precision,
                    b,
                    seq_len,
                    rank=r,
                    grad_checkpointing=gc,
                    optimizer=optimizer,
                    attn=attn,
                    eval_batch_size=b,
                )
                return est.allocated_bytes

            try:
                best, peak, n = max_batch(trace, budget)
            except (UsageError, Untraceable) as exc:  # cannot run (or be traced) at this precision on this model
                rows.append(FitRow(method, precision, r, gc, False, 0, 0, 0, note=str(exc)))
                continue
            note = f"the search stops at batch {MAX_BATCH}; more may fit" if best == MAX_BATCH else ""
            rows.append(FitRow(method, precision, r, gc, best > 0, best, peak + CUDA_CONTEXT_BYTES, n, note))
    return rows


def table(rows: list[FitRow], budget: int) -> str:
    """The human view: one line per row, fits at a glance."""
    lines = [
        f"{'method':<10} {'precision':<9} {'rank':>4} {'grad ckpt':<9} {'fits':<4} {'max batch':>9} {'peak (GiB)':>10}",
    ]
    for row in rows:
        lines.append(
            f"{row.method:<10} {row.precision:<9} {row.rank if row.rank is not None else '-':>4} "
            f"{'yes' if row.grad_checkpointing else 'no':<9} {'yes' if row.fits else 'NO':<4} "
            f"{row.max_batch_size:>9} {row.peak_bytes / GiB:>10.2f}" + (f"  ({row.note})" if row.note else "")
        )
    lines.append(
        f"card: {budget / GiB:.1f} GiB; fits = traced peak x {1 + FRAGMENTATION:.2f} (fragmentation) + "
        f"{512} MiB (CUDA context) <= card; peak at the max batch (at batch 1 where nothing fits)"
    )
    return "\n".join(lines)


def rows_json(rows: list[FitRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
