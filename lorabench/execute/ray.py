"""``--executor ray``: each run is a Ray task that requests its resources.

Ray is optional (``make install EXTRAS=ray``, or ``pip install 'lorabench[ray]'``). Each
task runs in a Ray worker process that serves that one task only (``max_calls=1``), so
every run still gets a fresh process with clean peak counters and its own CUDA context;
Ray sets ``CUDA_VISIBLE_DEVICES`` for tasks that request a GPU. Runs return their results
to the driver, which alone writes records; a worker's own files (``log.txt``,
``adapter/``) land in the run directory on the node that ran it, so on a multi-node
cluster ``--out`` (and the model cache) should be on a shared filesystem.

A run's task streams two messages: "started" once its process is ready (imports done),
then the result. The driver submits only what the cluster's CPUs and GPUs can hold at
once, so a run that does not start within ``execution.startup_timeout_s`` of its
submission (no node can take it, a worker that hangs in its imports) is stopped and
recorded as ``timeout`` instead of waiting forever. A run whose node dies is submitted
once more (Ray places it on a live node) and its record names the lost node; a second
loss records it as ``failed`` with both nodes named.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.execute.base import DEFAULT_STARTUP_TIMEOUT_S, RunResult, startup_timeout_of, timeout_of
from lorabench.models.ref import ModelRef
from lorabench.spec import RunSpec
from lorabench.vocab import Device, resolve_device

#: How often the driver looks at deadlines while it waits for results.
POLL_S = 1.0
#: A run's task kills its own worker at ``timeout_s``; the driver waits this much longer for that.
TIMEOUT_GRACE_S = 30.0
#: How many times a run is submitted when the node under it dies (the first try included).
ATTEMPTS = 2
#: The variables every worker gets from the driver: this checkout of lorabench, its cache, offline.
WORKER_ENV = ("PYTHONPATH", "LORABENCH_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "RAY_USAGE_STATS_ENABLED")


def this_node() -> dict[str, Any]:
    """The Ray node this process runs on, as a record's ``env.node`` holds it."""
    import ray

    try:
        # The address the node registered with (`ray start --node-ip-address`); the public
        # ray.util.get_node_ip_address() answers with the route's address in a worker.
        ip = ray._private.worker.global_worker.node_ip_address
    except Exception:
        ip = ray.util.get_node_ip_address()
    return {"id": ray.get_runtime_context().get_node_id(), "ip": ip, "host": socket.gethostname()}


def _ray_run(spec_dict: dict[str, Any], run_dir: str, timeout: float | None) -> Iterator[dict[str, Any]]:
    """Body of a run's Ray task (a streaming generator, in a fresh, single-use worker process)."""
    from lorabench.execute.entry import STARTED, run_stages

    if timeout is not None:
        # The task kills its own worker at the deadline; the driver turns the lost
        # worker into a `timeout` row (it knows the deadline has passed).
        watchdog = threading.Timer(timeout, lambda: os._exit(124))
        watchdog.daemon = True
        watchdog.start()
    node = this_node()
    for msg in run_stages(spec_dict, run_dir):
        if msg.get(STARTED):
            yield {**msg, "node": node}
        else:
            msg.setdefault("env", {})["node"] = node
            yield msg


def _ray_prepare(paths: list[str], log_path: str) -> dict[str, Any]:
    from lorabench.models.builtin import ensure_builtin

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return {"ok": True, "paths": {p: str(ensure_builtin(ModelRef.parse(p).name)) for p in paths}}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _ray_env() -> dict[str, Any]:
    from lorabench.provenance import device_environment

    return device_environment()


@dataclass
class _Flight:
    """One run's task as the driver follows it."""

    spec: RunSpec
    run_dir: Path
    need: tuple[float, float]  # (CPUs, GPUs) it holds while it runs
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None  # when its "started" message arrived
    node: dict[str, Any] | None = None
    attempt: int = 1
    lost: list[str] = field(default_factory=list)  # the nodes that died under earlier attempts


class RayExecutor:
    """Submits pending runs as Ray tasks, as many as the cluster holds; results come back as tasks finish."""

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--executor ray needs Ray: make install EXTRAS=ray (or pip install 'lorabench[ray]')"
            ) from None
        self.ray = ray
        self.address = address
        self._init_kwargs = init_kwargs
        self._owns = False
        self._gpus: float | None = None
        # Bound on reaching the cluster and on each run's start; bench sets it from the
        # suite's execution.startup_timeout_s before the first call.
        self.startup_timeout_s = DEFAULT_STARTUP_TIMEOUT_S

    def _connect(self) -> None:
        """Join the cluster (or start a local Ray) on first use; a head that does not answer is exit 2."""
        if self._gpus is not None:
            return
        ray = self.ray
        if not ray.is_initialized():
            _probe(self.address, min(10.0, self.startup_timeout_s))
            # Workers must import this checkout of lorabench, as the driver does.
            env_vars = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
            try:
                ray.init(
                    address=self.address,
                    runtime_env={"env_vars": env_vars} if env_vars else None,
                    log_to_driver=False,
                    **self._init_kwargs,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise UsageError(f"--executor ray: could not connect to {where}: {exc}") from None
            self._owns = True
        self._gpus = float(ray.cluster_resources().get("GPU", 0))

    def _options(self, spec: RunSpec) -> dict[str, Any]:
        """The resources one run asks Ray for: its threads as CPUs, one GPU if it uses CUDA."""
        ex = spec.execution
        # What the cluster offers stands in for torch's answer (the driver must not touch CUDA);
        # a run that names cuda asks for a GPU even where the cluster lists none, as it always has.
        wants_gpu = (
            resolve_device(ex.device, cuda_available=bool(self._gpus) or ex.device == Device.CUDA) == Device.CUDA
        )
        return {
            "num_cpus": ex.threads or 1,
            "num_gpus": 1 if wants_gpu else 0,
            "max_calls": 1,
            # The driver, not Ray, decides about a second try: only a lost node earns one,
            # never a run that timed out (its watchdog ends the worker) or crashed.
            "max_retries": 0,
            "num_returns": "streaming",
        }

    def _remote(self, fn: Any, **options: Any) -> Any:
        return self.ray.remote(**options)(fn)

    def _capacity(self) -> tuple[float, float]:
        """CPUs and GPUs of the cluster's live nodes now (the dead drop out of Ray's totals)."""
        total = self.ray.cluster_resources()
        return float(total.get("CPU", 0)), float(total.get("GPU", 0))

    def _executor_info(self, flight: _Flight) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "address": self.address, "attempts": flight.attempt}
        if flight.lost:
            info["lost_nodes"] = list(flight.lost)
        return info

    def _submit(self, flight: _Flight) -> Any:
        options = self._options(flight.spec)
        task = self._remote(_ray_run, **options)
        flight.submitted, flight.started, flight.node = time.monotonic(), None, None
        return task.remote(flight.spec.to_dict(), str(flight.run_dir.resolve()), timeout_of(flight.spec))

    def _timeout(self, flight: _Flight, now: float) -> RunResult | None:
        """A ``timeout`` result when ``flight`` is past one of its deadlines, else None."""
        spec = flight.spec
        if flight.started is None:
            limit = startup_timeout_of(spec)
            if now - flight.submitted < limit:
                return None
            cpus, gpus = flight.need
            error = (
                f"Ray did not start this run within execution.startup_timeout_s={limit:g}s of its submission "
                f"(it asks for {cpus:g} CPU(s) and {gpus:g} GPU(s): is there a node that offers them? "
                "or its worker hung starting up: runtime env, imports) and it was cancelled"
            )
        else:
            limit = timeout_of(spec)
            if limit is None or now - flight.started < limit + TIMEOUT_GRACE_S:
                return None
            error = f"run exceeded execution.timeout_s={limit:g}s and was cancelled"
        return {
            "status": "timeout",
            "error": error,
            "wall_s": now - flight.submitted,
            "executor": self._executor_info(flight),
        }

    def _lost(self, flight: _Flight, exc: Exception) -> str | None:
        """The node's name when ``exc`` says the node under the run died, else None."""
        if not isinstance(exc, self.ray.exceptions.NodeDiedError):
            return None
        node = flight.node or {}
        text = str(exc)
        if node:
            return f"{node.get('ip')} ({node.get('id')})"
        return text.split("Node IP:", 1)[1].split(". ", 1)[0].strip() if "Node IP:" in text else "unknown node"

    def _failure(self, flight: _Flight, exc: Exception, now: float) -> RunResult:
        """The result of a run whose task raised (a system failure: the run could not report)."""
        spec = flight.spec
        timeout = timeout_of(spec)
        executor = self._executor_info(flight)
        elapsed = now - flight.submitted
        # The task's watchdog ended its worker at timeout_s (counted from the task's start,
        # which is after its submission).
        if timeout is not None and elapsed >= timeout:
            return {
                "status": "timeout",
                "error": f"run exceeded execution.timeout_s={timeout:g}s and was killed",
                "wall_s": elapsed,
                "executor": executor,
            }
        text = f"{type(exc).__name__}: {exc}"
        status = "oom" if "OutOfMemoryError" in type(exc).__name__ or "out of memory" in text.lower() else "failed"
        where = f" on node {flight.node.get('ip')} ({flight.node.get('id')})" if flight.node else ""
        lost = f" after losing node(s) {', '.join(flight.lost)}" if flight.lost else ""
        result: RunResult = {
            "status": status,
            "error": f"Ray task lost{where}{lost}: {text}"[:4000],
            "wall_s": elapsed,
            "executor": executor,
        }
        if flight.node:
            result["env"] = {"node": flight.node}
        return result

    def submit(self, spec: RunSpec, run_dir: Path) -> RunResult:
        return next(iter(self.run_many([(spec, run_dir)])))[1]

    def run_many(self, items: Iterable[tuple[RunSpec, Path]]) -> Iterator[tuple[RunSpec, RunResult]]:
        self._connect()
        ray = self.ray
        queue: deque[_Flight] = deque()
        for spec, run_dir in items:
            options = self._options(spec)
            queue.append(_Flight(spec, run_dir, (float(options["num_cpus"]), float(options["num_gpus"]))))
        flying: dict[Any, _Flight] = {}
        try:
            while queue or flying:
                # Submit in order what fits beside the runs in flight; with nothing in flight,
                # the next run goes anyway (its start-up deadline then says whether it can start).
                cpus, gpus = self._capacity()
                while queue:
                    used_c = sum(f.need[0] for f in flying.values())
                    used_g = sum(f.need[1] for f in flying.values())
                    need_c, need_g = queue[0].need
                    if flying and (used_c + need_c > cpus or used_g + need_g > gpus):
                        break
                    flight = queue.popleft()
                    flying[self._submit(flight)] = flight
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=POLL_S)
                now = time.monotonic()
                for gen in ready:
                    flight = flying.pop(gen)
                    try:
                        msg: dict[str, Any] = ray.get(next(gen))
                    except StopIteration:
                        msg = {"status": "failed", "error": "Ray task ended without a result"}
                    except Exception as exc:
                        lost = self._lost(flight, exc)
                        if lost is not None and flight.attempt < ATTEMPTS:
                            flight.attempt += 1
                            flight.lost.append(lost)
                            queue.appendleft(flight)  # first in line for the live nodes
                            continue
                        if lost is not None:
                            flight.lost.append(lost)
                        yield flight.spec, self._failure(flight, exc, now)
                        continue
                    from lorabench.execute.entry import STARTED

                    if msg.get(STARTED):
                        flight.started, flight.node = now, msg.get("node")
                        flying[gen] = flight  # the result is still to come
                        continue
                    # Includes the time the task waited for resources, like a queue's latency.
                    msg["isolation_s"] = max(0.0, now - flight.submitted - float(msg.get("wall_s") or 0.0))
                    msg["executor"] = self._executor_info(flight)
                    yield flight.spec, msg  # type: ignore[misc]
                for gen, flight in list(flying.items()):
                    result = self._timeout(flight, now)
                    if result is not None:
                        ray.cancel(gen, force=True)
                        del flying[gen]
                        if flight.node:
                            result["env"] = {"node": flight.node}
                        yield flight.spec, result
        finally:
            for gen in flying:  # Ctrl-C: stop what has not finished
                ray.cancel(gen, force=True)

    def prepare(self, builtin_paths: list[str], log_path: Path) -> dict[str, Any]:
        self._connect()
        task = self._remote(_ray_prepare, num_cpus=1, max_calls=1)
        return self.ray.get(task.remote(builtin_paths, str(log_path.resolve())))

    def environment(self) -> dict[str, Any]:
        self._connect()
        task = self._remote(_ray_env, num_cpus=1, num_gpus=1 if self._gpus else 0, max_calls=1)
        ref = task.remote()
        try:
            env = self.ray.get(ref, timeout=self.startup_timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            self.ray.cancel(ref, force=True)
            env = {"device_probe_error": f"no Ray worker answered the device probe within {self.startup_timeout_s:g}s"}
        env["ray"] = self.ray.__version__
        return env

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
            self._owns = False


def _probe(address: str | None, timeout: float) -> None:
    """Fail fast when nothing listens at ``HOST:PORT``: ray.init would retry for minutes."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT (the head's `ray start --head --port`), or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(
            f"--address {address}: no Ray head answers there ({exc.strerror or exc}); "
            "start one with `ray start --head --port PORT`, or check the address"
        ) from None
