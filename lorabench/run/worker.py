"""Entry point of an isolated run process.

The executor's forkserver pre-imports this module (and with it torch, transformers
and peft), so every run forks from a warm interpreter: clean peak-memory counters
and CUDA context, without paying seconds of imports per run. The forkserver itself
never touches CUDA. Classification of failures into statuses happens here, where the
exception types are known.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import peft  # noqa: F401
import torch  # noqa: F401  (pre-imported for the forkserver)
import transformers  # noqa: F401

try:  # bitsandbytes is optional at import time; quantised runs report its absence
    import bitsandbytes  # noqa: F401
except Exception:  # pragma: no cover
    pass

from lorabench.plan import RunSpec
from lorabench.run.pipeline import run_point
from lorabench.run.train import Diverged


def classify(exc: BaseException) -> str:
    """Map an exception to a record status."""
    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text):
        return "oom"
    return "failed"


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout/stderr (and C-level writes) to the run's log file."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def child_main(spec_dict: dict[str, Any], run_dir: str, conn: Any) -> None:
    """Run one spec and send ``{status, error, ...}`` back over ``conn``."""
    # Ctrl-C reaches the whole process group; the driver decides what to do with us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    _redirect_output(path / "log.txt")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    try:
        result: dict[str, Any] = run_point(RunSpec.from_dict(spec_dict), path)
        result["status"] = "success"
        result["error"] = None
    except BaseException as exc:  # every failure is a result row, never a lost run
        traceback.print_exc()
        result = {"status": classify(exc), "error": f"{type(exc).__name__}: {exc}"[:4000]}
        result["traceback"] = traceback.format_exc()[-8000:]
    result["wall_s"] = time.perf_counter() - t0
    sys.stdout.flush()
    conn.send(result)
    conn.close()


def prepare_main(model_paths: list[str], log_path: str, conn: Any) -> None:
    """Materialise built-in models (pretraining on first use) outside any measured run."""
    from lorabench.models.builtin import ensure_builtin

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    _redirect_output(Path(log_path))
    try:
        out = {p: str(ensure_builtin(p.split(":", 1)[1])) for p in model_paths}
        conn.send({"ok": True, "paths": out})
    except BaseException as exc:
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    conn.close()


def noop_main(conn: Any) -> None:
    """Does nothing: the isolation-overhead benchmark times a round trip through this."""
    conn.send({"pid": os.getpid()})
    conn.close()
