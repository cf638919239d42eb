"""Library noise that says nothing to the user is filtered, and nothing else is."""

from __future__ import annotations

import logging
import warnings

from lorabench import quiet


def test_known_noise_is_dropped_and_other_messages_pass(caplog) -> None:
    quiet.install()
    quiet.install()  # idempotent
    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no kernels")
        log.warning("something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet.install()
        warnings.warn(
            "fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn(
            "fan_in_fan_out is set to True but the target module is `torch.nn.Linear`.", UserWarning, stacklevel=1
        )
    assert [str(w.message)[:30] for w in seen] == ["fan_in_fan_out is set to True "]
