"""A results directory belongs to lorabench: a marker says so, a lock says who is writing.

``--out`` may be absent, empty, or a directory lorabench made (``.lorabench``, naming
the suite). Anything else is refused before any file is written, so a user's own files
are never overwritten. ``.lock`` holds the pid, host and start time of the ``run``
writing into it; a second ``run`` is refused, and a lock left by a process that no
longer exists on this host is taken over.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError

MARKER = ".lorabench"
LOCK = ".lock"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The marker's content, or None when ``out_dir`` has none."""
    path = out_dir / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"{path}: unreadable lorabench marker; remove it only if this is not someone's data") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a lorabench marker")
    return data


def _lorabench_layout(out_dir: Path) -> bool:
    """Unmarked results that are lorabench's own: suite.yaml and runs/, with plan.json or a run's record.json.

    Results written before the marker existed have plan.json; committed results often keep
    only the suite and the records, and must stay resumable after a clone.
    """
    if not (out_dir / "suite.yaml").exists() or not (out_dir / "runs").is_dir():
        return False
    return (out_dir / "plan.json").exists() or any((out_dir / "runs").glob("*/record.json"))


def claim(out_dir: Path, suite_name: str) -> None:
    """Check that ``out_dir`` may receive this suite's results, and mark it as lorabench's.

    Refused (exit 2): a file; a non-empty directory without the marker; a directory
    marked for another suite (its report would be overwritten).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a directory; choose a directory for the results")
    if out_dir.is_dir():
        marker = read_marker(out_dir)
        if marker is None:
            if any(out_dir.iterdir()) and not _lorabench_layout(out_dir):
                raise UsageError(
                    f"--out {out_dir} is a non-empty directory that lorabench did not create (no {MARKER} file); "
                    "refusing to write into it so nothing of yours is overwritten. Choose a new or empty directory."
                )
        elif marker.get("suite") != suite_name:
            raise UsageError(
                f"--out {out_dir} holds the results of suite {marker.get('suite')!r}, not {suite_name!r}; "
                "choose another directory"
            )
        else:
            return
    out_dir.mkdir(parents=True, exist_ok=True)
    from lorabench import __version__

    (out_dir / MARKER).write_text(
        json.dumps({"suite": suite_name, "created_at": _now(), "lorabench": __version__}, indent=2) + "\n",
        encoding="utf-8",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_create(path: Path, info: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    return True


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


@contextmanager
def locked(out_dir: Path, log: Any = None) -> Iterator[None]:
    """Hold ``out_dir/.lock`` for the duration of a ``run``; refuse if another holds it."""
    path = out_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
    for _attempt in range(2):
        if _try_create(path, me):
            break
        held = _read_lock(path)
        pid, host, since = held.get("pid"), held.get("host"), held.get("since")
        stale = host == me["host"] and isinstance(pid, int) and not _pid_alive(pid)
        if not stale:
            raise UsageError(
                f"{out_dir} is locked by pid {pid} on {host} since {since}: another `lorabench run` is writing "
                f"there. Wait for it, or remove {path} if that process is gone."
            )
        if log is not None:
            print(
                f"lorabench: taking over a stale lock on {out_dir} (pid {pid} on {host} since {since} is gone)",
                file=log,
            )
        path.unlink(missing_ok=True)
    else:  # another process took the stale lock between our two attempts
        held = _read_lock(path)
        raise UsageError(
            f"{out_dir} is locked by pid {held.get('pid')} on {held.get('host')} since {held.get('since')}"
        )
    try:
        yield
    finally:
        if _read_lock(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
