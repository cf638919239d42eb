"""Keep nf4/fp4 evaluation on CPU on the same numeric path as training, on every CPU.

bitsandbytes (0.48 to at least 0.50.2) repacks a ``Linear4bit`` weight into an
AVX512-BF16 layout the first time the layer runs in eval mode without grad on a CPU
whose ``has_avx512bf16()`` is true (``Linear4bit.support_avx512bf16_for_cpu``, read once
in ``__init__``). Two problems for a benchmark:

* It crashes when a layer's ``in_features`` is not a multiple of the quantisation
  blocksize (64 by default): ``_convert_weight_packed_for_cpu`` reshapes the per-block
  ``absmax`` to ``[out_features, in_features // blocksize]``, which assumes no block spans
  two rows. The built-in tiny GPT-2 (hidden size 96) hits it: ``shape '[288, 1]' is invalid
  for input of size 432`` (288 x 96 weights = 432 blocks of 64). It also needs
  ``out_features % 32 == 0``.
* Where it works, it rounds ``absmax`` to bf16 and casts activations to bf16, so eval
  numbers would depend on the CPU model and differ from the path used in training.

So lorabench turns the repacking off per layer. Weights stay 4-bit and are dequantised
by bitsandbytes' ordinary kernel, exactly as in training and on CPUs without the
instruction set. Nothing is reimplemented: the flag is bitsandbytes' own.
"""

from __future__ import annotations

from typing import Any

PACKED_FLAG = "support_avx512bf16_for_cpu"


def packing_compatible(in_features: int, out_features: int, blocksize: int = 64, block_n: int = 32) -> bool:
    """Whether bitsandbytes' CPU repacking can handle a layer of this shape (see module docstring)."""
    return in_features % blocksize == 0 and out_features % block_n == 0 and in_features % 2 == 0


def disable_cpu_weight_packing(model: Any) -> int:
    """Turn off bitsandbytes' AVX512-BF16 repacking on every 4-bit layer; returns how many were on."""
    turned_off = 0
    for module in model.modules():
        if getattr(module, PACKED_FLAG, False):
            setattr(module, PACKED_FLAG, False)
            turned_off += 1
    return turned_off
