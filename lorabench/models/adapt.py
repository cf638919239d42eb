"""Narrow, recorded adaptations that let bitsandbytes quantise architectures it skips.

transformers replaces a layer with a bitsandbytes one only when ``type(module) is
nn.Linear`` (or GPT-2's ``Conv1D``), in ``integrations/bitsandbytes.py:
replace_with_bnb_linear`` (transformers 5.x). Falcon builds its projections
(``query_key_value``, ``dense``, ``dense_h_to_4h``, ``dense_4h_to_h``) as
``FalconLinear``, a subclass of ``nn.Linear`` whose forward is ``x @ W.T + b``: the same
computation as ``nn.Linear``. So at int8/nf4/fp4 nothing was quantised, and lorabench
refused the run rather than report an unquantised model as QLoRA.

The adaptation: while a Falcon model is built for a quantised run, its modelling module
creates ``nn.Linear`` where it would create ``FalconLinear`` (same parameters, same
state-dict keys, same maths), so transformers quantises them as for any other model.
It applies only to quantised Falcon loads, and each run that used it says so in
``resolved.adaptations``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def _falcon_linear_as_nn_linear() -> contextlib.AbstractContextManager[None]:
    import torch
    from transformers.models.falcon import modeling_falcon

    @contextlib.contextmanager
    def patch() -> Iterator[None]:
        original = modeling_falcon.FalconLinear
        modeling_falcon.FalconLinear = torch.nn.Linear  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            modeling_falcon.FalconLinear = original  # type: ignore[misc]

    return patch()


# model_type -> (what is adapted, the context manager that applies it while loading)
QUANTIZATION_ADAPTATIONS = {
    "falcon": (
        "falcon: FalconLinear layers (query_key_value, dense, dense_h_to_4h, dense_4h_to_h) built as "
        "torch.nn.Linear (same computation, x @ W.T + b) so that bitsandbytes quantises them",
        _falcon_linear_as_nn_linear,
    ),
}


@contextlib.contextmanager
def quantizable(model_type: str | None, precision: str, quantized: tuple[str, ...]) -> Iterator[list[str]]:
    """Apply the adaptation ``model_type`` needs to be quantised at ``precision``, if any.

    Yields the list of adaptations applied (for ``resolved.adaptations``); empty for an
    unquantised precision or an architecture that needs none.
    """
    entry = QUANTIZATION_ADAPTATIONS.get(model_type or "") if precision in quantized else None
    if entry is None:
        yield []
        return
    note, make = entry
    with make():
        yield [note]
