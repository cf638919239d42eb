"""What a fine-tuning method is to lorabench: metadata (no torch) plus apply/save/load.

A method module must not import torch at import time: ``validate`` and ``list`` load
method classes to read their options and rules. Torch is imported inside methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lorabench.vocab import QUANTIZED

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class NoOptions:
    """For methods that take no options."""


@dataclass(frozen=True)
class MethodContext:
    """What a method needs to know about the run it is applied in."""

    rank: int | None
    options: Any
    task_family: str  # "causal-lm" | "classification" | "seq2seq"
    precision: str
    model_type: str  # config.model_type, e.g. "gpt2"
    target_modules: tuple[str, ...] | None  # the model definition's override, if any
    # Optimizer steps the run will take: budget schedules (AdaLoRA) need it up front.
    train_steps: int | None = None


def resolve_alpha(alpha: float | None, rank: int, alpha_ratio: float | None = None) -> float:
    """LoRA-style scaling numerator, the one rule: ``alpha`` as given, else ``alpha_ratio`` x rank,
    else 2 x rank (a common choice; the record keeps it).

    The 2 x rank default stays an int, as records written before ``alpha_ratio`` hold it.
    """
    if alpha is not None:
        return alpha
    return alpha_ratio * rank if alpha_ratio is not None else 2 * rank


# k times the rank: "2r", "0.5r", "2*r", "2 r", "r".
_RANK_MULTIPLE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)?\s*\*?\s*r\s*")


def rank_multiple(text: str) -> float | None:
    """The k of an alpha written as a multiple of the rank (``2r``, ``0.5r``, ``r``), else None."""
    match = _RANK_MULTIPLE.fullmatch(text)
    if match is None:
        return None
    return float(match.group(1)) if match.group(1) else 1.0


def settle_alpha(options: Any) -> None:
    """The alpha rule of every LoRA-style options class, first in its ``__post_init__``.

    ``alpha: 2r`` means ``alpha_ratio: 2`` (alpha = 2 x rank, so a rank sweep keeps the
    scale alpha/r fixed) and is stored as that: one run, one spelling, one run_id.
    ``alpha`` and ``alpha_ratio`` together are an error; their ranges are the class's RANGES.
    """
    alpha, ratio = options.alpha, options.alpha_ratio
    if isinstance(alpha, str):
        k = rank_multiple(alpha)
        if k is None or k <= 0:
            raise ValueError(
                f"`alpha` should be a number > 0 or a positive multiple of the rank such as `2r` or `0.5r`, "
                f"got {alpha!r}"
            )
        if ratio is not None:
            raise ValueError(f"set `alpha` ({alpha}) or `alpha_ratio` ({ratio}), not both")
        object.__setattr__(options, "alpha", None)  # frozen dataclass: settled once, in __post_init__
        object.__setattr__(options, "alpha_ratio", k)
    elif alpha is not None and ratio is not None:
        raise ValueError(f"set `alpha` ({alpha}) or `alpha_ratio` ({ratio}), not both")


def method_context(
    cls: type[Method],
    *,
    rank: int | None,
    options: Any,
    task_family: str,
    precision: str,
    model_type: str,
    target_modules: tuple[str, ...] | None = None,
    train_steps: int | None = None,
) -> MethodContext:
    """The one way a :class:`MethodContext` is built (run, ``params``, ``estimate``): the rank resolved."""
    return MethodContext(
        rank=cls.resolve_rank(rank),
        options=options,
        task_family=task_family,
        precision=precision,
        model_type=model_type,
        target_modules=tuple(target_modules) if target_modules else None,
        train_steps=train_steps,
    )


# peft's names for a sequence-classification head (PeftModelForSequenceClassification
# trains these in full as `modules_to_save`); non-peft methods follow the same rule.
HEAD_NAMES = ("classifier", "score")


def head_parameter_names(model: torch.nn.Module, task_family: str) -> set[str]:
    """Parameters of a newly initialised classification head, which must train in full."""
    if task_family != "classification":
        return set()
    heads = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in HEAD_NAMES]
    return {n for n, _ in model.named_parameters() if any(n.startswith(h + ".") for h in heads)}


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Put ``os.environ`` back exactly as it was, whatever the block did to it.

    Why: peft's BOFT builds its CUDA extension inside ``patch_environment(CC="gcc",
    CXX="gcc")``, which restores nothing when the build fails (every CPU-only machine).
    The leaked ``CXX=gcc`` then makes torch.compile link its C++ kernels without libstdc++
    in that process and every child it starts (``undefined symbol: _ZTTNSt7__cxx1119
    basic_ostringstream...`` at load): a BOFT run with ``compile: true``, or any
    later compiled run started from the same process.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        if dict(os.environ) != saved:
            os.environ.clear()
            os.environ.update(saved)


def _keeping_environ(fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, "_environ_kept", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with environ_kept():
            return fn(*args, **kwargs)

    wrapper._environ_kept = True  # type: ignore[attr-defined]
    return wrapper


class Method:
    """Base class. Subclasses set the class attributes and implement :meth:`apply`.

    Every subclass's ``apply`` and ``load`` run inside :func:`environ_kept`: they call into
    libraries (peft) that may change the process environment as a side effect.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("apply", "load"):
            if name in cls.__dict__:
                setattr(cls, name, _keeping_environ(cls.__dict__[name]))

    name: ClassVar[str]
    description: ClassVar[str]
    uses_rank: ClassVar[bool] = False
    default_rank: ClassVar[int | None] = None
    # Methods that update base weights cannot run on a frozen quantised base.
    trains_base_weights: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    @classmethod
    def resolve_rank(cls, rank: int | None) -> int | None:
        """The rank a run uses: the one given, else the method's default; None for rank-free methods.

        The one place a default rank is filled in: the planner, ``params``, ``estimate`` and
        the run all ask it.
        """
        if not cls.uses_rank:
            return None
        return rank if rank is not None else cls.default_rank

    @classmethod
    def check_registration(cls, name: str) -> None:
        """Raise TypeError when the class does not fit its registry entry (checked as it is loaded)."""
        problems = []
        if getattr(cls, "name", None) != name:
            problems.append(f"its `name` is {getattr(cls, 'name', None)!r}")
        if not getattr(cls, "description", ""):
            problems.append("it has no `description`")
        if cls.uses_rank != (cls.default_rank is not None):
            problems.append(f"uses_rank={cls.uses_rank} but default_rank={cls.default_rank!r}")
        if not (dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen):
            problems.append("its Options is not a frozen dataclass")
        if problems:
            raise TypeError(f"method {name!r} ({cls.__module__}.{cls.__qualname__}): {'; '.join(problems)}")

    @classmethod
    def invalid_reason(cls, precision: str, model_type: str | None = None) -> str | None:
        """Why this method cannot run at ``precision`` on ``model_type`` (None when it can).

        ``model_type`` is None where validation cannot know it without loading (hub ids).
        """
        if cls.trains_base_weights and precision in QUANTIZED:
            return (
                f"{cls.name} updates base weights, which are frozen {precision} tensors in bitsandbytes; "
                "use an adapter method (e.g. lora) on a quantised base"
            )
        return None

    @classmethod
    def extra_positions(cls, options: Any) -> int:
        """Positions the method puts in front of every sequence (virtual tokens); 0 for most."""
        return 0

    def apply(self, model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
        """Return the model with exactly the method's parameters trainable."""
        raise NotImplementedError

    def after_step(self, model: torch.nn.Module, step: int) -> None:
        """Called after each optimizer step, before gradients are cleared (AdaLoRA's budget)."""

    def task_forward(self, model: torch.nn.Module) -> Callable[[dict[str, Any]], torch.Tensor] | None:
        """``batch -> task loss`` where the wrapped model's ``.loss`` holds more than the task loss.

        None (most methods): ``model(**batch).loss`` is the task loss. A method whose
        library folds a regulariser into ``.loss`` (peft's AdaLoRA) returns the task loss
        here and the regulariser from :meth:`regularisers`, so every method's logged
        ``train_loss`` is the same quantity.
        """
        return None

    def regularisers(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Auxiliary loss terms (weighted) optimised beside the task loss, logged apart from it; {} for most."""
        return {}

    def resolved(self, model: torch.nn.Module, ctx: MethodContext) -> dict[str, Any]:
        """Options as actually applied (e.g. resolved target modules), for the record."""
        return {}

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Save what a user must keep to reproduce the fine-tune (the trainable state)."""
        from lorabench.methods.state import save_trainable

        save_trainable(model, out_dir)

    def load(self, base: torch.nn.Module, ctx: MethodContext, in_dir: Path) -> torch.nn.Module:
        """Rebuild the fine-tuned model from ``base`` and what :meth:`save` wrote."""
        from lorabench.methods.state import load_trainable

        model = self.apply(base, ctx)
        load_trainable(model, in_dir)
        return model
