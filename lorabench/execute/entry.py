"""Entry points of an isolated run process (the targets the executors start).

The forkserver imports this module in its preload, so it must stay CUDA-free: peft,
bitsandbytes and anything else that touches the GPU at import is imported here only
inside a run (``RUN_IMPORTS``), after the run has checked that it starts from a clean,
CUDA-free fork and, in a GPU pool, after ``CUDA_VISIBLE_DEVICES`` is set.

What a run's start-up costs is measured here and returned with the result:
``import_s`` (``RUN_IMPORTS``) and ``cuda_init_s`` (creating the CUDA context, when the
run uses CUDA); the driver adds ``isolation_s``, its wall time minus the run's own work.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorabench.models.ref import ModelRef
from lorabench.vocab import Device, resolve_device

#: Imported by each run, never by the forkserver: they initialise CUDA at import on a
#: CUDA machine. bitsandbytes is optional (quantised runs report its absence).
RUN_IMPORTS: tuple[str, ...] = ("bitsandbytes", "peft")


#: The key of the message a run process sends when its start-up is done (see :func:`run_here`).
STARTED = "lorabench_started"


class BadForkError(RuntimeError):
    """The run process started with CUDA already initialised by its parent."""


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout/stderr (and C-level writes) to the run's log file."""
    # O_NOFOLLOW: a log.txt planted as a link is refused, never written through.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _check_clean_start() -> None:
    """Fail with a clear message if this process inherited an initialised CUDA state."""
    import torch

    in_bad_fork = getattr(torch._C, "_cuda_isInBadFork", lambda: False)
    if torch.cuda.is_initialized() or in_bad_fork():
        raise BadForkError(
            "this run's process was forked from a parent that had initialised CUDA, so it cannot use the GPU; "
            "the executor's preload (lorabench/execute/preload.py) must stay CUDA-free"
        )


def start_run(spec_dict: dict[str, Any], device_slot: str | None = None) -> dict[str, float | None]:
    """Prepare this process for one run; returns the start-up breakdown.

    Order matters: ``CUDA_VISIBLE_DEVICES`` before anything touches CUDA, the CUDA
    context before the imports (so ``import_s`` is the imports alone), then peft and
    bitsandbytes.
    """
    if device_slot is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device_slot
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _check_clean_start()
    from lorabench import quiet

    quiet.install()  # before bitsandbytes and peft are imported: their noise is filtered at the source
    import torch

    cuda_init_s = None
    if resolve_device(spec_dict["execution"]["device"]) == Device.CUDA:
        t = time.perf_counter()
        torch.cuda.init()
        cuda_init_s = time.perf_counter() - t
    t = time.perf_counter()
    for name in RUN_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            if name != "bitsandbytes":
                raise
    return {"import_s": time.perf_counter() - t, "cuda_init_s": cuda_init_s}


def run_here(
    spec_dict: dict[str, Any], run_dir: str, device_slot: str | None = None, started: Any = None
) -> dict[str, Any]:
    """Run one spec in this process and return ``{status, error, ...}``; never raises.

    ``started()`` is called once the process is ready to run (imports done), so the driver
    can bound start-up apart from the run (``execution.startup_timeout_s``).
    """
    stages = run_stages(spec_dict, run_dir, device_slot)
    for msg in stages:
        if not msg.get(STARTED):
            return msg
        if started is not None:
            try:
                started()
            except BaseException as exc:  # the run's own failure, reported as its result
                return stages.throw(exc)
    raise AssertionError("run_stages ended without a result")  # pragma: no cover


def run_stages(spec_dict: dict[str, Any], run_dir: str, device_slot: str | None = None) -> Iterator[dict[str, Any]]:
    """:func:`run_here` as steps: ``{STARTED: True}`` once start-up is done, then the result.

    A start-up that fails yields the (failed) result alone. Ray's executor streams these
    to its driver, which bounds start-up as the local executor does.
    """
    # Ctrl-C reaches the whole process group; the driver decides what to do with us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    _redirect_output(path / "log.txt")
    from lorabench.run import progress

    progress.set_run_dir(path)
    startup: dict[str, float | None] = {"import_s": None, "cuda_init_s": None}
    t0 = time.perf_counter()
    if spec_dict["execution"]["processes"] > 1:
        # This process is the ranks' parent (execute/ranks.py); each rank starts itself.
        from lorabench.execute.ranks import run_ranks

        ranks: dict[str, Any] | None = None
        steps = run_ranks(spec_dict, path, device_slot, start_run, _redirect_output)
        try:
            for msg in steps:
                if msg is None:  # every rank has started
                    yield {STARTED: True}
                else:
                    ranks = msg
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:  # the run's row; closing run_ranks ends every rank
            steps.close()
            traceback.print_exc()
            ranks = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:4000]}
        assert ranks is not None
        ranks.setdefault("wall_s", time.perf_counter() - t0)
        ranks.setdefault("env", {})["pid"] = os.getpid()
        sys.stdout.flush()
        yield ranks
        return
    try:
        startup = start_run(spec_dict, device_slot)
        yield {STARTED: True}
        from lorabench.run.pipeline import run_point
        from lorabench.spec import RunSpec

        t0 = time.perf_counter()
        result: dict[str, Any] = run_point(RunSpec.from_dict(spec_dict), path)
        result["status"] = "success"
        result["error"] = None
    except GeneratorExit:
        raise
    except BaseException as exc:  # every failure is a result row, never a lost run
        from lorabench.run.outcome import classify

        traceback.print_exc()
        result = {"status": classify(exc), "error": f"{type(exc).__name__}: {exc}"[:4000]}
        result["traceback"] = traceback.format_exc()[-8000:]
    # The run's own work; the driver subtracts it from its wall time to get isolation_s.
    result["wall_s"] = time.perf_counter() - t0
    result.update(startup)
    env = result.setdefault("env", {})
    env["pid"] = os.getpid()
    env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.stdout.flush()
    yield result


class DriverWatch:
    """End this process when the driver that waits for its result is gone.

    A forked run's parent is the forkserver, not the driver, and every forkserver child
    holds the server's keep-alive pipe: after a SIGKILL of ``lorabench run`` (or an OOM
    kill of the driver) the run would train on to the end, holding its GPU memory, with
    nobody to read the result, and the forkserver would stay up as long as it did. The
    result pipe tells: its write end (ours) reports POLLERR once the driver's read end
    is closed. A daemon thread waits on that and exits the process; :meth:`disarm`
    before sending, so a driver that reads the result and closes its end first is not
    taken for a dead one.
    """

    def __init__(self, conn: Any) -> None:
        self._armed = threading.Event()
        self._armed.set()
        self._fd = conn.fileno()
        threading.Thread(target=self._wait, name="lorabench-driver-watch", daemon=True).start()

    def _wait(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLERR)  # POLLERR/POLLHUP/POLLNVAL only: never busy
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for _fd, ev in events:
                if ev & select.POLLNVAL:  # our end was closed: the result went out
                    return
                if ev & (select.POLLERR | select.POLLHUP) and self._armed.is_set():
                    sys.stderr.write("lorabench: the driver exited; stopping this run (no record is written)\n")
                    sys.stderr.flush()
                    os._exit(3)
                return

    def disarm(self) -> None:
        self._armed.clear()


def run(spec_dict: dict[str, Any], run_dir: str, conn: Any, device_slot: str | None = None) -> None:
    """Forkserver target: run one spec and send the result over ``conn``."""
    watch = DriverWatch(conn)
    result = run_here(spec_dict, run_dir, device_slot, started=lambda: conn.send({STARTED: True}))
    watch.disarm()
    conn.send(result)
    conn.close()


def prepare(model_paths: list[str], log_path: str, conn: Any) -> None:
    """Materialise built-in models (pretraining on first use) outside any measured run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = DriverWatch(conn)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    _redirect_output(Path(log_path))
    try:
        from lorabench.models.builtin import ensure_builtin

        out = {p: str(ensure_builtin(ModelRef.parse(p).name)) for p in model_paths}
        watch.disarm()
        conn.send({"ok": True, "paths": out})
    except BaseException as exc:
        watch.disarm()
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    conn.close()


def probe_env(conn: Any) -> None:
    """Send the device part of the environment (torch, CUDA, GPU names, driver).

    The driver never imports torch, yet a run that dies before reporting still needs a
    record that says where it ran; this child asks once per suite.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from lorabench.provenance import device_environment

        msg = device_environment()
    except BaseException as exc:
        msg = {"device_probe_error": f"{type(exc).__name__}: {exc}"}
    send_quietly(conn, msg)


def send_quietly(conn: Any, msg: Any) -> bool:
    """Send ``msg`` to the driver; False, with no traceback, when it stopped listening (Ctrl-C, exit)."""
    try:
        conn.send(msg)
        conn.close()
    except (OSError, EOFError):  # BrokenPipeError: the driver closed its end and needs no answer
        return False
    return True


def noop(conn: Any) -> None:
    """Does nothing: the isolation-overhead benchmark times a round trip through this."""
    conn.send({"pid": os.getpid()})
    conn.close()


def imports_only(conn: Any) -> None:
    """Times ``RUN_IMPORTS`` in a fresh fork (the isolation-overhead benchmark)."""
    t = time.perf_counter()
    for name in RUN_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    conn.send({"pid": os.getpid(), "import_s": time.perf_counter() - t})
    conn.close()
