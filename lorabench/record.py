"""Record stage: one JSON file per run, written atomically by the driver alone.

Reports, leaderboards and checks read only these records. A record that cannot be
read is an error naming the file, never a silently missing row.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.spec import RunSpec
from lorabench.vocab import STATUSES, MiB, Status

SCHEMA_VERSION = 1
#: Statuses that say nothing about the run itself (a full disk, a quota): resume reruns
#: them, where every other failure is reused (deterministic, and as costly again).
TRANSIENT_STATUSES = (Status.FAILED_ENV.value,)
MEM_SOURCES = ("rss", "allocated", "reserved", "nvml")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def make_record(spec: RunSpec, result: dict[str, Any], base_env: dict[str, Any]) -> dict[str, Any]:
    """Combine a spec and what its run returned into the record format.

    ``base_env`` (versions, host, device, git: what the driver knows) is in every
    record, so one whose run died before reporting still has its provenance; the
    run's own ``env`` refines it.
    """
    status = result.get("status", "failed")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    env = dict(base_env)
    env.update(result.get("env") or {})
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "label": spec.label,
        "suite": spec.suite,
        "status": status,
        "error": result.get("error"),
        "spec": spec.to_dict(),
        "metrics": result.get("metrics") or {},
        "profile": result.get("profile") or {},
        "resolved": result.get("resolved") or {},
        "curves": result.get("curves") or {},
        # Sanity flags (names in lorabench.sanity.FLAG_MEANINGS); empty when the run looks sound.
        "flags": list(result.get("flags") or []),
        "env": env,
        "wall_s": result.get("wall_s"),
        "isolation_s": result.get("isolation_s"),
        "import_s": result.get("import_s"),
        "cuda_init_s": result.get("cuda_init_s"),
        "executor": result.get("executor"),
        "created_at": now_utc(),
        **({"traceback": result["traceback"]} if result.get("traceback") else {}),
        **({"log_tail": result["log_tail"]} if result.get("log_tail") else {}),
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # a crash leaves the old file or the new one, never half of one


def write_record(run_dir: Path, record: dict[str, Any], predictions: list[dict[str, Any]] | None = None) -> None:
    if predictions is not None:
        _atomic_write(run_dir / "predictions.jsonl", "".join(json.dumps(p) + "\n" for p in predictions))
    _atomic_write(run_dir / "record.json", json.dumps(record, indent=2, default=str) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read record {path}: {exc}") from None
    if not isinstance(rec, dict) or "run_id" not in rec or rec.get("status") not in STATUSES:
        raise UsageError(f"{path} is not a lorabench record (missing run_id or status)")
    return rec


def load_records(out_dir: Path, run_ids: Collection[str] | None = None) -> list[dict[str, Any]]:
    """Every record under ``out_dir/runs`` (only those of ``run_ids`` if given), sorted by label."""
    runs = out_dir / "runs"
    if not runs.is_dir():
        raise UsageError(f"no runs/ directory under {out_dir}: is this a lorabench results directory?")
    recs = [read_record(p) for p in sorted(runs.glob("*/record.json"))]
    if run_ids is not None:
        wanted = set(run_ids)
        recs = [r for r in recs if r["run_id"] in wanted]
    return sorted(recs, key=lambda r: r["label"])


def flat_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One runs.csv row: identity, status, cost figures, peak memory, then metrics."""
    spec, prof = rec["spec"], rec.get("profile") or {}
    row: dict[str, Any] = {
        "run_id": rec["run_id"],
        "model": spec["model"]["name"],
        "method": spec["method"],
        "rank": spec["rank"],
        "precision": spec["precision"],
        "task": spec["task"],
        "seed": spec["seed"],
        "status": rec["status"],
    }
    for key in (
        "trainable_params",
        "total_params",
        "trainable_pct",
        "tokens_per_s",
        "samples_per_s",
        "train_s",
        "eval_s",
        "adapter_bytes",
    ):
        row[key] = prof.get(key)
    mem = prof.get("memory_mb") or {}
    for phase in ("train", "eval"):
        for src in MEM_SOURCES:
            row[f"peak_{src}_{phase}_mb"] = (mem.get(phase) or {}).get(src)
    # The estimate beside the measurement (`lorabench estimate`; compare with peak_allocated_train_mb).
    est = prof.get("estimate_bytes") or {}
    row["estimate_allocated_mb"] = round(est["allocated"] / MiB, 2) if est.get("allocated") else None
    row["model_flops_per_token"] = prof.get("model_flops_per_token")
    row["mfu"] = prof.get("mfu")
    for name, value in sorted((rec.get("metrics") or {}).items()):
        row[name] = value
    row["device"] = (rec.get("env") or {}).get("device_name")
    row["error"] = rec.get("error")
    return row
