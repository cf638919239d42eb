"""How a run's exception becomes a record status (the statuses are ``vocab.Status``)."""

from __future__ import annotations

import errno
import os

from lorabench.run.train import Diverged
from lorabench.vocab import Status

#: OSError codes that are the machine's state, not the run's: out of disk or quota, a
#: read-only or failing file system, out of file descriptors. Recorded as ``failed_env``
#: and rerun on resume.
ENV_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE})
# The same faults after a library turned them into another exception (torch's
# serialisation says "PytorchStreamWriter failed writing file ...: No space left on device").
_ENV_MESSAGES = tuple(os.strerror(e) for e in sorted(ENV_ERRNOS))


def environment_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is one of :data:`ENV_ERRNOS`."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in ENV_ERRNOS:
            return True
        if any(m in str(cur) for m in _ENV_MESSAGES):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def classify(exc: BaseException) -> str:
    """Map an exception raised inside a run to a record status."""

    if isinstance(exc, Diverged):
        return Status.DIVERGED.value
    if environment_fault(exc):
        return Status.FAILED_ENV.value
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return Status.OOM.value
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text):
        return Status.OOM.value
    return Status.FAILED.value
