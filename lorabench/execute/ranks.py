"""Execute stage, one run as several processes: ``execution.processes`` ranks via torch.multiprocessing.

The run process an executor started (a forkserver child, a Ray task) becomes the
ranks' parent. It starts N ranks with ``torch.multiprocessing.start_processes``,
each given torch.distributed's environment contract (``MASTER_ADDR``, a free
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), and
waits with torch's ``ProcessContext.join``, which ends the others as soon as one rank
fails. Ranks are forked: the run process is, at that point, exactly what the forkserver
guarantees (torch and transformers imported, CUDA untouched), so a fork gives each
rank the forkserver's warm start without a second interpreter; each rank then starts
itself like a single-process run (``entry.start_run``: its CUDA context, peft and
bitsandbytes imports).

Every rank reports over its own pipe: that it started, then rank 0 its whole result
and any rank its error. The run's result is rank 0's; a failure is the failing rank's
own error (the earliest one reported, or the rank that died without a word, with the
tail of its log). Ranks die with the run process (``PR_SET_PDEATHSIG``): a run killed
at its timeout, or with its driver, leaves no rank behind.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lorabench.execute.base import death, log_tail

#: Where rank r (r > 0) writes its output; rank 0 writes to the run's ``log.txt``.
RANK_LOG = "log.rank{rank}.txt"


def _die_with_parent() -> None:
    """SIGKILL this rank when the run process dies (Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _rank_main(
    rank: int,
    spec_dict: dict[str, Any],
    run_dir: str,
    device_slot: str | None,
    port: int,
    conns: list[Any],
    start: Callable[..., dict[str, Any]],
    redirect: Callable[[Path], None],
) -> None:
    """One rank: the environment contract, its own start-up, the run, and a report to the parent."""
    # torch's wrapper asked for SIGINT at the parent's death, which a run ignores (Ctrl-C is the driver's).
    _die_with_parent()
    conn = conns[rank]
    for other in conns[:rank] + conns[rank + 1 :]:
        other.close()
    n = len(conns)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(n),
        LOCAL_WORLD_SIZE=str(n),
    )
    from lorabench.run import progress

    if rank:
        redirect(Path(run_dir) / RANK_LOG.format(rank=rank))
        progress.set_run_dir(None)  # rank 0 reports the run's progress
    world = None
    try:
        startup = start(spec_dict, device_slot)
        conn.send({"started": True})
        from lorabench.run.distributed import init_world
        from lorabench.run.pipeline import run_point
        from lorabench.spec import RunSpec
        from lorabench.vocab import resolve_device

        spec = RunSpec.from_dict(spec_dict)
        t0 = time.perf_counter()
        world = init_world(spec.execution.strategy, resolve_device(spec.execution.device))
        result = run_point(spec, Path(run_dir), world)
        result.update(status="success", error=None, wall_s=time.perf_counter() - t0, **startup)
    except BaseException as exc:  # reported, then this rank exits non-zero and join ends the others
        from lorabench.run.outcome import classify

        traceback.print_exc()
        sys.stderr.flush()
        conn.send(
            {
                "status": classify(exc),
                "error": f"rank {rank}: {type(exc).__name__}: {exc}"[:4000],
                "traceback": traceback.format_exc()[-8000:],
                "failed_at": time.time(),
            }
        )
        conn.close()
        os._exit(1)  # no teardown: a peer may be gone mid-collective
    if world is not None:
        world.close()
    conn.send(result if rank == 0 else {"status": "success"})
    conn.close()
    sys.stdout.flush()


def run_ranks(
    spec_dict: dict[str, Any],
    run_dir: Path,
    device_slot: str | None,
    start: Callable[..., dict[str, Any]],
    redirect: Callable[[Path], None],
) -> Iterator[dict[str, Any] | None]:
    """Run one spec as ``execution.processes`` ranks: yields None once every rank has started,
    then rank 0's result, or the failing rank's error.

    ``start`` and ``redirect`` are the run process's own start-up and log redirection
    (``entry``), which each rank repeats for itself. Closing the generator early (the
    driver's start-up bound, an error) ends every rank.
    """
    import torch.multiprocessing as tmp
    from torch.distributed.elastic.utils.distributed import get_free_port
    from torch.multiprocessing.spawn import ProcessException

    n = int(spec_dict["execution"]["processes"])
    # The run process is daemonic (the driver's exit ends it) and multiprocessing refuses
    # daemonic parents; its ranks cannot outlive it anyway (PR_SET_PDEATHSIG).
    mp.current_process().daemon = False
    ctx = mp.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
    readers = {r: p[0] for r, p in enumerate(pipes)}
    saved_tmp = tempfile.tempdir
    tempfile.tempdir = str(run_dir)  # torch's per-process error files: inside the run, not /tmp
    try:
        procs = tmp.start_processes(
            _rank_main,
            args=(spec_dict, str(run_dir), device_slot, get_free_port(), [p[1] for p in pipes], start, redirect),
            nprocs=n,
            join=False,
            start_method="fork",
        )
    finally:
        tempfile.tempdir = saved_tmp
    for _, writer in pipes:
        writer.close()
    messages: dict[int, dict[str, Any]] = {}
    n_started = 0
    all_started = False
    failure: BaseException | None = None

    def drain(timeout: float) -> None:
        nonlocal n_started, all_started
        for reader in mpc.wait(list(readers.values()), timeout):
            rank = next(r for r, c in readers.items() if c is reader)
            try:
                msg = reader.recv()
            except (EOFError, OSError):
                del readers[rank]
                continue
            if msg.get("started"):
                n_started += 1
                all_started = n_started == n
            else:
                messages[rank] = msg

    try:
        while True:
            drain(0.2)
            if all_started:
                all_started = False
                yield None
            try:
                if procs.join(timeout=0):
                    break
            except ProcessException as exc:  # one rank failed; torch has ended the others
                failure = exc
                break
    except BaseException:
        for p in procs.processes:
            if p.is_alive():
                p.kill()
        raise
    while readers:  # what the ranks sent before they ended
        drain(0)
        if not mpc.wait(list(readers.values()), 0):
            break
    for path in procs.error_files:  # torch writes one only for an exception we did not catch
        if path and os.path.exists(path):
            os.unlink(path)
    exitcodes = [p.exitcode for p in procs.processes]
    if failure is None and 0 in messages and messages[0].get("status") == "success":
        result = messages[0]
        result.setdefault("env", {})["rank_pids"] = [p.pid for p in procs.processes]
        yield result
        return
    yield _failure(messages, exitcodes, failure, run_dir)


def _failure(
    messages: dict[int, dict[str, Any]], exitcodes: list[int | None], exc: BaseException | None, run_dir: Path
) -> dict[str, Any]:
    """The run's result when a rank failed: the first cause, named by its rank."""
    # A rank that died without reporting (a signal, os._exit, the OOM killer) is the cause:
    # its peers only saw their collectives break afterwards.
    first = getattr(exc, "error_index", None)
    # torch ends the others with SIGTERM once one fails: those are not causes.
    silent = [r for r, code in enumerate(exitcodes) if code not in (0, None, -signal.SIGTERM) and r not in messages]
    if silent:
        rank = first if first in silent else silent[0]
        status, why = death(exitcodes[rank])
        log = run_dir / ("log.txt" if rank == 0 else RANK_LOG.format(rank=rank))
        return {
            "status": status,
            "error": f"rank {rank}: {why.replace('run process', 'process')}",
            "log_tail": log_tail(log),
        }
    reported = [m for m in messages.values() if m.get("status") != "success"]
    if reported:
        out = dict(min(reported, key=lambda m: m.get("failed_at", float("inf"))))
        out.pop("failed_at", None)
        return out
    return {"status": "failed", "error": f"ranks ended without a result (exit codes {exitcodes})"}
