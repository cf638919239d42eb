"""Every file lorabench writes: whole or not at all, inside its results directory, never through a link.

A file is written to a temporary name in its own directory, flushed, and renamed over
the old one, so a crash, a full disk or a SIGTERM leaves the previous file or the new
one, never a truncated mix. ``root`` is the results directory: no path component
between it and the file may be a symbolic link (results are committed and cloned, and
git keeps links, so a link could point anywhere). Write failures (full disk, read-only
directory, permissions) become a one-line :class:`UsageError`.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lorabench.errors import UsageError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def check_no_links(root: Path, path: Path) -> None:
    """Refuse (exit 2) when ``path`` or a directory between ``root`` and it is a symbolic link.

    ``root`` itself is what the user named and may be a link to a directory; everything
    below it must be lorabench's own, real files and directories.
    """
    root, path = Path(root), Path(path)
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise UsageError(f"{path} is outside the results directory {root}; lorabench writes only inside it") from None
    cur = root
    for part in rel.parts:
        if part in ("", ".", ".."):
            raise UsageError(f"{path}: a path inside the results directory may not contain {part!r}")
        cur = cur / part
        if cur.is_symlink():
            raise UsageError(
                f"{cur} is a symbolic link; lorabench never writes through a link (it could point outside "
                f"{root}). Remove the link, or choose another --out"
            )


def _oserror(path: Path, exc: OSError) -> UsageError:
    what = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        what = "it is a symbolic link"
    return UsageError(f"cannot write {path}: {what}")


def ensure_dir(root: Path, path: Path) -> Path:
    """``mkdir -p`` of ``path`` below ``root``, refusing links and turning OS errors into one line."""
    check_no_links(root, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _oserror(path, exc) from None
    check_no_links(root, path)  # nothing swapped in while we created it
    return path


def write_bytes(path: Path, data: bytes, root: Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    if root is not None:
        ensure_dir(root, path.parent)
        check_no_links(root, path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except FileExistsError:  # left by a killed writer of this pid number: ours to replace
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except OSError as exc:
        raise _oserror(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # replaces a link at ``path`` itself, never its target
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _oserror(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str, root: Path | None = None) -> Path:
    """:func:`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"), root)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGTERM, SIGINT and SIGHUP while a set of renames completes, so none stops it halfway.

    A held signal is delivered as soon as the block ends.
    """

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
