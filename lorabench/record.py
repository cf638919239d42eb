"""Record stage: one JSON file per run, written atomically by the driver alone.

Reports, leaderboards and checks read only these records. The driver builds a typed
:class:`~lorabench.record_data.Record` (:func:`make_record`) and writes it; readers get
one back from :func:`read_record` / :func:`load_records`. A record that cannot be read
is an error naming the file, never a silently missing row. The record's fields, and how
to add one, are in ``lorabench/record_data.py``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from lorabench import atomic
from lorabench.errors import UsageError
from lorabench.metrics import record_values, step_time_spread
from lorabench.record_data import Profile, Record, RecordError
from lorabench.spec import RunSpec, without_late_defaults
from lorabench.vocab import STATUSES, MiB, Status

SCHEMA_VERSION = 1
#: Statuses that say nothing about the run itself (a full disk, a quota; a point never run
#: because it was predicted not to fit): resume reruns them, where every other failure is
#: reused (deterministic, and as costly again).
TRANSIENT_STATUSES = (Status.FAILED_ENV.value, Status.PREDICTED_OOM.value)
MEM_SOURCES = ("rss", "allocated", "reserved", "nvml")


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


RECIPE_SECTIONS = ("train", "method_options", "quantization", "task_options", "eval")


def recipe_hash(spec: dict[str, Any]) -> str:
    """A hash of how a point was trained and evaluated (spec sections, not the grid point itself).

    Two result sets can hold the same grid point (task, model, method, rank, precision)
    trained differently (47 linear-schedule steps vs 40 constant); ``compare`` warns when
    matched points' recipes differ. Kept apart from run_id, which stays as it was.
    """

    spec = without_late_defaults(spec)  # a setting added since, at its default, is the same recipe
    blob = json.dumps({k: spec.get(k) for k in RECIPE_SECTIONS}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def make_record(spec: RunSpec, result: dict[str, Any], base_env: dict[str, Any]) -> Record:
    """Combine a spec and what its run returned (plain data, across the process) into a record.

    ``base_env`` (versions, host, device, git: what the driver knows) is in every
    record, so one whose run died before reporting still has its provenance; the
    run's own ``env`` refines it.
    """
    status = result.get("status", "failed")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    env = dict(base_env)
    env.update(result.get("env") or {})
    spec_d = spec.to_dict()
    return Record(
        schema_version=SCHEMA_VERSION,
        run_id=spec.run_id,
        label=spec.label,
        suite=spec.suite,
        status=status,
        error=result.get("error"),
        spec=spec_d,
        recipe=recipe_hash(spec_d),
        metrics=result.get("metrics") or {},
        # Validation scores (`resolved.splits` says which split each figure is on); only where the task has one.
        **({"val_metrics": result["val_metrics"]} if result.get("val_metrics") else {}),
        profile=Profile.from_dict(result.get("profile") or {}),
        resolved=result.get("resolved") or {},
        curves=result.get("curves") or {},
        # Sanity flags (names in lorabench.sanity.FLAG_MEANINGS); empty when the run looks sound.
        flags=list(result.get("flags") or []),
        env=env,
        wall_s=result.get("wall_s"),
        isolation_s=result.get("isolation_s"),
        import_s=result.get("import_s"),
        cuda_init_s=result.get("cuda_init_s"),
        executor=result.get("executor"),
        created_at=now_utc(),
        **({"traceback": result["traceback"]} if result.get("traceback") else {}),
        **({"log_tail": result["log_tail"]} if result.get("log_tail") else {}),
    )


def write_record(
    run_dir: Path,
    record: Record,
    predictions: list[dict[str, Any]] | None = None,
    root: Path | None = None,
) -> None:
    """Write a run's predictions, then its record, each atomically (a crash leaves the old file or the new).

    ``root`` is the results directory (default: two levels up, ``OUT/runs/<id>``): nothing
    below it may be a symbolic link.
    """
    root = run_dir.parent.parent if root is None else root
    if predictions is not None:
        lines = (json.dumps(finite_json(p)[0], default=str, allow_nan=False) + "\n" for p in predictions)
        atomic.write_text(run_dir / "predictions.jsonl", "".join(lines), root)
    data, replaced = finite_json(record.to_dict())
    if replaced:  # said in the record, never dropped silently
        notes = data.setdefault("profile", {}).setdefault("notes", [])
        notes.append("non-finite values written as null (JSON has no NaN or Infinity): " + ", ".join(replaced[:8]))
    atomic.write_text(run_dir / "record.json", json.dumps(data, indent=2, default=str, allow_nan=False) + "\n", root)


def finite_json(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every NaN or infinite float replaced by None, and the paths replaced.

    Python's json writes them as ``NaN``/``Infinity``, which is not JSON: browsers, jq and
    most other languages refuse the whole file. A record keeps the rest and names the places.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None, [f"{path or '.'} ({value})"]
    if isinstance(value, dict):
        out, found = {}, []
        for k, v in value.items():
            out[k], sub = finite_json(v, f"{path}.{k}" if path else str(k))
            found += sub
        return out, found
    if isinstance(value, (list, tuple)):
        items = [finite_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, sub in items for p in sub]
    return value, []


#: Largest integer a record's number may hold: beyond it float() overflows or loses the value.
MAX_INT = 2**63
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: spec fields every reader uses, with the types they must have.
_SPEC_FIELDS: dict[str, tuple[type, ...]] = {
    "method": (str,),
    "task": (str,),
    "precision": (str,),
    "rank": (int, type(None)),
    "seed": (int, type(None)),
}


def _number_problem(value: Any) -> str | None:
    if value is None or isinstance(value, float):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"is not a number: {str(value)[:60]!r}"
    if abs(value) >= MAX_INT:
        return f"is an integer of {len(str(abs(value)))} digits, out of range"
    return None


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` is not a record every reader can use, or None.

    Records are data: committed, cloned, copied between machines. Each reader (report,
    leaderboard, compare, check, resume) indexes into them, so the shape is checked
    once, here, and a bad record is one clear error naming its file, never a traceback.
    """
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    run_id = rec.get("run_id")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        return f"run_id must be a short name of letters, digits, '.', '_' or '-', got {str(run_id)[:60]!r}"
    if rec.get("status") not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}, got {str(rec.get('status'))[:60]!r}"
    for key in ("label", "suite"):
        if not isinstance(rec.get(key), str):
            return f"{key} must be a string, got {type(rec.get(key)).__name__}"
    spec = rec.get("spec")
    if not isinstance(spec, dict):
        return f"spec must be an object, got {type(spec).__name__}"
    model = spec.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return "spec.model must be an object with a string name"
    for key, types in _SPEC_FIELDS.items():
        if not isinstance(spec.get(key), types) or isinstance(spec.get(key), bool):
            return f"spec.{key} must be {' or '.join(t.__name__ for t in types)}, got {str(spec.get(key))[:60]!r}"
    if not isinstance(spec.get("task_options") or {}, dict):
        return "spec.task_options must be an object"
    for key in ("metrics", "val_metrics", "profile", "resolved", "curves", "env"):
        if not isinstance(rec.get(key) or {}, dict):
            return f"{key} must be an object, got {type(rec.get(key)).__name__}"
    for key in ("metrics", "val_metrics"):
        for name, value in (rec.get(key) or {}).items():
            why = _number_problem(value)
            if why:
                return f"{key[:-1]} {name!r} {why}" if key == "metrics" else f"{key}.{name} {why}"
    if not isinstance(rec.get("flags") or [], list):
        return "flags must be a list"
    if not isinstance(rec.get("error"), (str, type(None))):
        return "error must be a string or null"
    try:
        parsed = Record.from_dict(rec)
    except RecordError as exc:
        return str(exc)
    return _profile_problem(parsed)


def _profile_problem(rec: Record) -> str | None:
    """Compute what the readers derive from the record (runs.csv row, registered figures) once."""

    try:
        for key, value in rec.profile.to_dict().items():
            if isinstance(value, int) and _number_problem(value):
                return f"profile.{key} {_number_problem(value)}"
        flat_row(rec)
        record_values(rec)
        step_time_spread(rec.profile)
        float((rec.profile.host_cpu_train or {}).get("other_cpu_share") or 0.0)
    except UsageError as exc:
        return str(exc)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, ArithmeticError) as exc:
        return f"profile or metrics of an unexpected shape ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def parse_record(raw: Any, where: str) -> Record:
    """A :class:`Record` from a decoded JSON value; anything else is exit 2 naming ``where``."""
    why = record_problem(raw)
    if why:
        raise UsageError(f"{where} is not a valid lorabench record: {why}")
    return Record.from_dict(raw)


def read_record(path: Path) -> Record:
    """A record from its file; anything that is not a usable record is exit 2 naming the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read record {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise UsageError(f"cannot read record {path}: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read record {path}: {exc}") from None
    return parse_record(raw, str(path))


def load_records(out_dir: Path, run_ids: Collection[str] | None = None) -> list[Record]:
    """Every record under ``out_dir/runs`` (only those of ``run_ids`` if given), sorted by label."""
    runs = out_dir / "runs"
    if not runs.is_dir():
        raise UsageError(f"no runs/ directory under {out_dir}: is this a lorabench results directory?")
    recs = [read_record(p) for p in sorted(runs.glob("*/record.json"))]
    if run_ids is not None:
        wanted = set(run_ids)
        recs = [r for r in recs if r.run_id in wanted]
    return sorted(recs, key=lambda r: r.label)


def flat_row(rec: Record) -> dict[str, Any]:
    """One runs.csv row: identity, status, cost figures, peak memory, then metrics."""
    spec, prof = rec.spec, rec.profile
    row: dict[str, Any] = {
        "run_id": rec.run_id,
        "model": spec["model"]["name"],
        "method": spec["method"],
        "rank": spec["rank"],
        "precision": spec["precision"],
        "task": spec["task"],
        "seed": spec["seed"],
        "status": rec.status,
    }
    row.update(
        trainable_params=prof.trainable_params,
        total_params=prof.total_params,
        trainable_pct=prof.trainable_pct,
        tokens_per_s=prof.tokens_per_s,
        samples_per_s=prof.samples_per_s,
        train_s=prof.train_s,
        eval_s=prof.eval_s,
        adapter_bytes=prof.adapter_bytes,
    )
    for phase in ("train", "eval"):
        mem = prof.phase(phase)
        for src in MEM_SOURCES:
            row[f"peak_{src}_{phase}_mb"] = mem.source(src) if mem else None
    # The estimate beside the measurement (`lorabench estimate`; compare with peak_allocated_train_mb).
    est = prof.estimate_bytes or {}
    row["estimate_allocated_mb"] = round(est["allocated"] / MiB, 2) if est.get("allocated") else None
    row["model_flops_per_token"] = prof.model_flops_per_token
    row["mfu"] = prof.mfu
    for name, value in sorted(rec.metrics.items()):
        row[name] = value
    # The learning rate, and whether it is one of a sweep's (`select` chooses among those on val_*).
    row["lr"] = (spec.get("train") or {}).get("lr")
    row["sweep"] = ";".join(spec.get("sweep") or ())
    # One run over N processes (torch.distributed): its figures are the ranks' (memory: the largest).
    execution = spec.get("execution") or {}
    row["processes"] = execution.get("processes", 1)
    row["strategy"] = execution.get("strategy", "ddp") if row["processes"] > 1 else None
    for name, value in sorted((rec.val_metrics or {}).items()):
        row[f"val_{name}"] = value
    row["device"] = rec.env.get("device_name")
    row["error"] = rec.error
    return row
