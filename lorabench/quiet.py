"""Library messages that tell a lorabench user nothing, filtered out at the source.

Each filter names the exact message it drops and why, so nothing else goes quiet:

- bitsandbytes, on CPUs with AVX512-BF16, logs ``Failed to load CPU gemm_4bit_forward from
  kernels-community`` at every import when the optional ``kernels`` package (a Hub
  download) is absent; bitsandbytes then uses its own CPU kernel, which is what
  lorabench measures anyway.
- peft warns ``fan_in_fan_out is set to False but the target module is `Conv1D``` for
  GPT-2-style models and sets it to True itself: a correct default, said once per layer.
"""

from __future__ import annotations

import logging
import warnings

_BNB_CPU = "bitsandbytes.backends.cpu.ops"
_BNB_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_PEFT_CONV1D = r"fan_in_fan_out is set to False but the target module is `Conv1D`"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def install() -> None:
    """Install the filters in this process (idempotent; cheap: imports neither library)."""
    log = logging.getLogger(_BNB_CPU)
    if not any(isinstance(f, _DropMessage) for f in log.filters):
        log.addFilter(_DropMessage(_BNB_MESSAGE))
    warnings.filterwarnings("ignore", message=_PEFT_CONV1D, category=UserWarning)
