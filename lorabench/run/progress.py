"""A run's progress (step, steps, loss) as a small file the driver's status line reads.

The run is another process (forkserver child, Ray task); the driver only sees it finish.
The trainer writes ``runs/<id>/progress.json`` each time it logs the loss (every
``train.log_every`` steps, atomically: a reader never sees half a file), and ``lorabench
run``'s status line shows the running point with ``step 12/47, loss 1.83``. The file is
removed once the record is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILENAME = "progress.json"
_path: Path | None = None


def set_run_dir(run_dir: Path | None) -> None:
    """Where this process's run reports its progress (None: nowhere)."""
    global _path
    _path = None if run_dir is None else Path(run_dir) / FILENAME


def report(step: int, steps: int, loss: float) -> None:
    """Best effort: a full disk or a removed directory must not fail the run."""
    if _path is None:
        return
    tmp = _path.with_name(f".{FILENAME}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"step": step, "steps": steps, "loss": loss}), encoding="utf-8")
        os.replace(tmp, _path)
    except OSError:
        pass


def read(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_text(label: str, progress: dict[str, Any] | None) -> str:
    """``label: step 12/47, loss 1.83`` (the label alone before the first logged step)."""
    if not progress:
        return f"{label}: starting"
    try:
        return f"{label}: step {int(progress['step'])}/{int(progress['steps'])}, loss {float(progress['loss']):.3g}"
    except (KeyError, TypeError, ValueError):
        return label
