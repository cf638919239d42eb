"""A results directory belongs to lorabench: a marker says so, a lock says who is writing.

``--out`` may be absent, empty, or a directory lorabench made (``.lorabench``, naming
the suite). Anything else is refused before any file is written, so a user's own files
are never overwritten; ``report`` likewise refuses a directory that is not lorabench's.
``.lock`` holds the pid, host and start time of the command writing into it (``run``,
``report``); a second ``run`` is refused, a second ``report`` waits for it, and a lock
left by a process that no longer exists on this host, or one that cannot be read, is
taken over with a message (under a guard, so two commands finding the same stale lock do
not both take it). The lock is created whole (written under a temporary name,
then hard-linked into place), so a full disk cannot leave an empty lock behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lorabench.atomic import check_no_links, write_text
from lorabench.errors import UsageError
from lorabench.suite.yamlnodes import load_yaml

MARKER = ".lorabench"
LOCK = ".lock"
#: A takeover guard older than this was left by a command that died while taking over a stale lock.
TAKEOVER_STALE_S = 30.0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The marker's content, or None when ``out_dir`` has none."""
    path = out_dir / MARKER
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link, not a lorabench marker; refusing to use {out_dir}")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
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


def _check_out_path(out_dir: Path) -> None:
    """Refuse an ``--out`` that cannot be a directory: a file, a dangling link, a path under a file."""
    if out_dir.is_symlink() and not out_dir.exists():
        raise UsageError(f"--out {out_dir} is a symbolic link to nothing ({os.readlink(out_dir)}); choose a directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a directory; choose a directory for the results")
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out_dir} lies under {parent}, which is a file, not a directory")
            break


def claim(out_dir: Path, suite_name: str, force: bool = False) -> None:
    """Check that ``out_dir`` may receive this suite's results, and mark it as lorabench's.

    Refused (exit 2): a file; a dangling link; a non-empty directory without the marker;
    a directory holding another suite's results (its report would be overwritten),
    unless ``force``: the user says the old results may be replaced.
    """
    _check_out_path(out_dir)
    if out_dir.is_dir():
        marker = read_marker(out_dir)
        if marker is None:
            if any(out_dir.iterdir()) and not _lorabench_layout(out_dir):
                raise UsageError(
                    f"--out {out_dir} is a non-empty directory that lorabench did not create (no {MARKER} file); "
                    "refusing to write into it so nothing of yours is overwritten. Choose a new or empty directory."
                )
            other = _layout_suite(out_dir)
            if other is not None and other != suite_name and not force:
                raise UsageError(
                    f"--out {out_dir} holds the results of suite {other!r}, not {suite_name!r}; "
                    "choose another directory (or --force to take it over)"
                )
        elif marker.get("kind") == "baseline":
            raise UsageError(
                f"--out {out_dir} is a frozen baseline (lorabench.report.baseline); choose another directory"
            )
        elif marker.get("suite") != suite_name and not force:
            raise UsageError(
                f"--out {out_dir} holds the results of suite {marker.get('suite')!r}, not {suite_name!r}; "
                "choose another directory (or --force to take it over)"
            )
        elif marker.get("suite") == suite_name:
            return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None
    from lorabench import __version__

    text = json.dumps({"suite": suite_name, "created_at": _now(), "lorabench": __version__}, indent=2) + "\n"
    write_text(out_dir / MARKER, text, out_dir)


def _layout_suite(out_dir: Path) -> str | None:
    """The suite an unmarked lorabench directory holds, from its suite.yaml's ``name`` (None if unknown)."""

    path = out_dir / "suite.yaml"
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ValueError, UsageError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def require_owned(out_dir: Path) -> None:
    """Refuse (exit 2) to write report files into a directory that is not lorabench's results.

    A marker, or the layout lorabench writes (committed results from before the marker),
    says it is; a project that merely has a ``runs/`` folder is not.
    """
    _check_out_path(out_dir)
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir}: no such results directory")
    if read_marker(out_dir) is None and not _lorabench_layout(out_dir):
        if not (out_dir / "runs").is_dir():
            raise UsageError(f"no runs/ directory under {out_dir}: is this a lorabench results directory?")
        raise UsageError(
            f"{out_dir} is not a lorabench results directory (no {MARKER} file, no suite.yaml with plan.json); "
            "refusing to write report files into it so nothing of yours is overwritten"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_create(out_dir: Path, path: Path, info: dict[str, Any]) -> bool:
    """Create the lock whole: written under a temporary name, then linked into place (fails if it exists)."""
    check_no_links(out_dir, path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write_text(tmp, json.dumps(info))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise UsageError(f"cannot create the lock {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's content; None when it cannot be parsed (empty, cut short, not an object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holder(held: dict[str, Any]) -> str:
    return f"pid {held.get('pid')} on {held.get('host')} since {held.get('since')}"


def _remove_stale(out_dir: Path, path: Path, stale: dict[str, Any] | None) -> bool:
    """Remove the lock if it still holds ``stale``; True if this process removed it.

    Two commands finding the same stale lock must not both take it over: the second would
    otherwise delete the lock the first had just created. Removal happens under a takeover
    guard (``.lock.takeover``, created whole like the lock), after re-reading the lock: a
    lock that changed since it was judged stale is left alone, and the caller tries again.
    A guard left by a command that died mid-takeover (older than ``TAKEOVER_STALE_S``) is removed.
    """
    guard = path.with_name(path.name + ".takeover")
    if not _try_create(out_dir, guard, {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}):
        try:
            if time.time() - guard.stat().st_mtime > TAKEOVER_STALE_S:
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
        return False
    try:
        if _read_lock(path) != stale:
            return False  # released, or taken by another command since we read it
        path.unlink(missing_ok=True)
        return True
    finally:
        guard.unlink(missing_ok=True)


@contextmanager
def locked(out_dir: Path, log: Any = None, wait_s: float = 0.0, command: str = "run") -> Iterator[None]:
    """Hold ``out_dir/.lock`` while ``command`` writes there.

    Another live holder: refused at once (``wait_s`` 0, as ``run`` does), or waited for up
    to ``wait_s`` seconds and then refused (``report``). A stale lock (its process gone
    from this host) or one that cannot be parsed is taken over with a message.
    """
    path = out_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": command}
    deadline = time.monotonic() + wait_s
    said_waiting = False
    while True:
        if _try_create(out_dir, path, me):
            break
        held = _read_lock(path)
        if held is None:
            reason = "it cannot be read (empty or cut short, e.g. by a full disk)"
        elif not held:
            continue  # released between our attempt and our read
        else:
            pid, host = held.get("pid"), held.get("host")
            if not (host == me["host"] and isinstance(pid, int) and not _pid_alive(pid)):
                if time.monotonic() < deadline:
                    if not said_waiting and log is not None:
                        print(f"lorabench: waiting for the lock on {out_dir} ({_holder(held)})", file=log)
                        said_waiting = True
                    time.sleep(0.1)
                    continue
                raise UsageError(
                    f"{out_dir} is locked by {_holder(held)}: another lorabench command "
                    f"({held.get('command', 'run')}) is writing there. Wait for it, or remove {path} if that "
                    "process is gone."
                )
            reason = f"{_holder(held)} is gone"
        if _remove_stale(out_dir, path, held) and log is not None:
            print(f"lorabench: taking over a stale lock on {out_dir} ({reason})", file=log)
    try:
        yield
    finally:
        held = _read_lock(path)
        if held and held.get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
