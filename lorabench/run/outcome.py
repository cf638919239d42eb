"""How a run's exception becomes a record status (the statuses are ``vocab.Status``)."""

from __future__ import annotations

from lorabench.vocab import Status


def classify(exc: BaseException) -> str:
    """Map an exception raised inside a run to a record status."""
    from lorabench.run.train import Diverged

    if isinstance(exc, Diverged):
        return Status.DIVERGED.value
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return Status.OOM.value
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text):
        return Status.OOM.value
    return Status.FAILED.value
