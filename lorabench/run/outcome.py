"""How a run's exception becomes a record status (the statuses are ``record.STATUSES``)."""

from __future__ import annotations


def classify(exc: BaseException) -> str:
    """Map an exception raised inside a run to a record status."""
    from lorabench.run.train import Diverged

    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text):
        return "oom"
    return "failed"
