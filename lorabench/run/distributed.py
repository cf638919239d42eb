"""Run stage, several ranks: what changes inside a run when ``execution.processes`` > 1.

Each rank is a process started by ``execute/ranks.py`` with torch.distributed's
environment contract (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``). :func:`init_world` joins the process group (NCCL on CUDA, one GPU per
rank; gloo on CPU); :meth:`World.wrap` hands the model to torch's own wrappers:
``DistributedDataParallel`` (``strategy: ddp``, every rank holds the whole model) or
FSDP2's ``fully_shard`` (``strategy: fsdp``: each transformer block and, where the
adapters' dtype differs from the base's, each adapter module is its own sharded unit,
then the root).

The data contract keeps a point's numbers independent of the world size:
``train.batch_size`` is the global batch, every rank draws the same shuffled order
and takes its own contiguous slice, and each rank's mean loss is weighted by its
share of the global batch's loss items (:func:`loss_items`), so the gradient the
ranks average is the single-process gradient of the same batch, up to float error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from lorabench.errors import UsageError


@dataclass
class World:
    """This rank's place in the run: rank, world size, strategy, backend and device."""

    rank: int
    size: int
    local_rank: int
    strategy: str
    backend: str
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: Any) -> Any:
        """The module the training loop calls: DDP's wrapper, or ``model`` itself sharded in place by FSDP2."""
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.local_rank] if self.device == "cuda" else None
            # Gradients live in DDP's buckets (no second copy of every gradient).
            return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
        return shard(model)

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (one all-reduce; a host sync)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def mean_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` averaged over the ranks (one all-reduce)."""
        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.size

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def init_world(strategy: str, device: str) -> World:
    """Join the process group from the environment contract (``env://``)."""
    rank, size, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if device == "cuda":
        visible = torch.cuda.device_count()
        if visible < size:
            raise UsageError(
                f"execution.processes={size} on CUDA needs {size} visible GPUs (one per rank); this run sees {visible}"
                " (with --devices each run gets one GPU)"
            )
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=size)
    return World(rank=rank, size=size, local_rank=local, strategy=strategy, backend=backend, device=device)


def shard(model: Any) -> Any:
    """FSDP2: shard adapters (when their dtype differs from the base's), transformer blocks, then the root.

    FSDP2 all-gathers a unit's parameters as one flat buffer of one dtype, so fp32
    adapters on a bf16 base are units of their own; blocks are the classes the model
    lists in ``_no_split_modules`` (the units transformers itself keeps whole).
    """
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    blocks = set(getattr(base, "_no_split_modules", None) or ())
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    modules = list(model.modules())
    for module in modules:
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and module is not model and {p.dtype for p in own} - frozen and frozen:
            fully_shard(module)
    for module in modules:
        if type(module).__name__ in blocks and module is not model:
            fully_shard(module)
    fully_shard(model)
    return model


@contextlib.contextmanager
def whole_state(model: Any, world: World) -> Iterator[None]:
    """Within this block, rank 0's ``model`` saves whole tensors; a no-op for DDP (every rank holds them).

    Every rank takes part (it gathers): FSDP2's ``state_dict()`` returns shards, so it is
    answered with torch's full state dict (gathered on rank 0, on the CPU), and the
    parameters themselves are unsharded for methods that save from them.
    """
    if world.strategy != "fsdp":
        yield
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in units:
        m.unshard()
    model.state_dict = lambda *args, **kwargs: full  # the instance's own answer, removed below
    try:
        yield
    finally:
        del model.state_dict
        for m in units:
            m.reshard()


def loss_items(batch: dict[str, Any], encoder_decoder: bool) -> int:
    """How many terms the model's mean loss averages over in ``batch`` (transformers' losses).

    A causal LM predicts token t+1 from t (labels shifted by one, -100 ignored); a
    seq2seq model scores its decoder labels; a classifier averages over rows.
    """
    labels = batch["labels"]
    if labels.dim() == 1:
        return int(labels.shape[0])
    if encoder_decoder:
        return int((labels != -100).sum())
    return int((labels[:, 1:] != -100).sum())


def slice_for(indices: list[int], rank: int, size: int) -> list[int]:
    """This rank's contiguous share of a global batch's row indices (sizes differ by at most one)."""
    n = len(indices)
    if n < size:
        raise UsageError(f"a global batch of {n} rows cannot be split over {size} ranks")
    return indices[rank * n // size : (rank + 1) * n // size]


def merge_memory(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and source, the largest rank's peak (MiB): memory per GPU/rank, as the leaderboard shows it."""
    out: dict[str, Any] = {}
    for phase in per_rank[0]:
        merged: dict[str, Any] = {}
        for src in per_rank[0][phase]:
            values = [r[phase].get(src) for r in per_rank if r.get(phase)]
            numbers = [v for v in values if isinstance(v, (int, float))]
            merged[src] = max(numbers) if numbers else values[0]
        out[phase] = merged
    return out
