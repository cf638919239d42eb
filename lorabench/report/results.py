"""A result set, aggregated by grid point: the one input of leaderboards, compare and check.

A result set is a results directory (``runs/*/record.json``) or a ``runs.csv`` written
by lorabench. Runs are grouped by grid point (task, model, method, rank, precision:
the spec without its seed) and every registered metric is aggregated over the
successful seeds with :func:`lorabench.stats.aggregate`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorabench.errors import UsageError
from lorabench.metrics import METRICS, peak_memory, quality_metrics, record_values, step_time_spread
from lorabench.record import load_records, recipe_hash
from lorabench.record_data import Profile, Record
from lorabench.report.escape import csv_unneutralise
from lorabench.stats import Agg, aggregate
from lorabench.tasks import TASK_TYPES

POINT = ("task", "model", "method", "rank", "precision")
PointKey = tuple[str, str, str, "int | None", str]

# A run whose step times vary this much (IQR over median) has throughput figures that
# say more about the machine's load than about the method.
NOISY_TIMING_SPREAD = 0.5
# A run during whose training other processes used this share of the host's CPUs
# (profile.host_cpu_train.other_cpu_share, HostCPU) was timed on a shared machine.
BUSY_HOST_SHARE = 0.25
REPORT_FLAGS = {
    "noisy_timing": f"per-step time spread (IQR/median) above {NOISY_TIMING_SPREAD:.0%}: "
    "tokens/s and step time reflect machine load",
    "busy_host": f"other processes used over {BUSY_HOST_SHARE:.0%} of the host's CPU time during training: "
    "its timings are not this run's alone",
}


@dataclass
class Run:
    """One run reduced to what aggregation needs."""

    run_id: str
    key: PointKey
    seed: int | None
    status: str
    values: dict[str, float]
    primary: str | None
    task_metrics: tuple[str, ...]
    flags: tuple[str, ...] = ()
    mem_source: str | None = None
    timing_spread: float | None = None
    error: str | None = None
    recipe: str | None = None  # lorabench.record.recipe_hash of the spec
    alpha: float | None = None  # the LoRA alpha the run used (resolved by the method), if it has one
    lr: float | None = None  # the learning rate the run trained with
    # Set for a run of a learning-rate sweep: the point without the rate (``key`` names the rate).
    sweep_key: PointKey | None = None
    val_values: dict[str, float] = field(default_factory=dict)  # validation metrics (record.val_metrics)
    ranks: str | None = None  # "2 fsdp": a run over several processes (its memory figures are per rank)


def point_label(key: PointKey) -> str:
    """A point's display name, e.g. ``minilm lora-r8 @nf4 (lr=0.003 selected)``.

    A swept point's method cell carries its rate (``lora (lr=0.003 selected)``); the rank
    belongs beside the method's name, before that note.
    """
    _task, model, method, rank, precision = key
    head, _, tail = method.partition(" ")
    name = head if rank is None else f"{head}-r{rank}"
    return f"{model} {name} @{precision}" + (f" {tail}" if tail else "")


@dataclass
class Point:
    """One grid point over its seeds."""

    key: PointKey
    runs: list[Run]
    aggs: dict[str, Agg] = field(default_factory=dict)
    selection: Any = None  # lorabench.report.select.Selection, for a row chosen out of a sweep

    @property
    def task(self) -> str:
        return self.key[0]

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.status == "success"]

    @property
    def n(self) -> int:
        return len(self.ok)

    @property
    def status(self) -> str:
        """``success`` when every seed succeeded, else counts such as ``failed 1/2, success 1/2``."""
        if self.n == len(self.runs):
            return "success"
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        return ", ".join(f"{s} {c}/{len(self.runs)}" for s, c in sorted(counts.items()))

    @property
    def primary(self) -> str | None:
        return next((r.primary for r in self.runs if r.primary), None)

    @property
    def task_metrics(self) -> tuple[str, ...]:
        return next((r.task_metrics for r in self.runs if r.task_metrics), ())

    @property
    def flags(self) -> list[str]:
        out: list[str] = []
        for r in self.runs:
            out += [f for f in r.flags if f not in out]
        return out

    @property
    def mem_source(self) -> str | None:
        return next((r.mem_source for r in self.ok if r.mem_source), None)

    @property
    def ranks(self) -> str:
        """Processes per run and strategy over seeds (``"2 fsdp"``; ``"1"`` for single-process runs)."""
        seen = sorted({r.ranks or "1" for r in self.ok})
        return " / ".join(seen) or "-"

    @property
    def timing_spread(self) -> float | None:
        spreads = [r.timing_spread for r in self.ok if r.timing_spread is not None]
        return max(spreads) if spreads else None

    @property
    def alpha(self) -> str:
        """The resolved alpha over seeds ("-" for methods without one)."""
        seen = sorted({r.alpha for r in self.runs if r.alpha is not None})
        return " / ".join(f"{a:g}" for a in seen) or "-"

    @property
    def recipes(self) -> set[str]:
        return {r.recipe for r in self.runs if r.recipe}

    @property
    def label(self) -> str:
        task, model, method, rank, precision = self.key
        return f"{model}/{method if rank is None else f'{method}-r{rank}'}/{precision}/{task}"


def _task_info(rec: Record) -> tuple[str | None, tuple[str, ...]]:
    """(primary metric, the task's metrics in order) from the task type's declaration."""

    ttype = (rec.spec.get("task_options") or {}).get("type")
    if ttype in TASK_TYPES:
        cls = TASK_TYPES.get(ttype)
        return cls.primary_metric, tuple(cls.metrics)
    names = tuple(rec.metrics)
    return (names[0] if names else None), names


def _non_finite(status: str, error: str | None, metrics: dict[str, Any]) -> tuple[str, str | None]:
    """A ``success`` whose task metric is NaN or infinite is ``diverged``: not a value to average or drop.

    aggregate() skips non-finite values, so left as a success such a seed would vanish from
    its point's mean while still counting towards ``n``, and a gate would pass it.
    """
    if status != "success":
        return status, error
    bad = []
    for name, value in metrics.items():
        try:
            if value is not None and not math.isfinite(float(value)):
                bad.append(f"{name}={value}")
        except (TypeError, ValueError, OverflowError):
            continue  # record_values says what is wrong with it
    if not bad:
        return status, error
    return "diverged", f"recorded as success with a non-finite metric ({', '.join(bad)})"


def _alpha(rec: Record) -> float | None:
    """The LoRA alpha a run used: resolved by the method (record.resolved.method.lora_alpha, or
    alpha), else as configured."""
    method = rec.resolved.get("method") or {}
    value = method.get("lora_alpha", method.get("alpha"))
    if value is None:
        value = (rec.spec.get("method_options") or {}).get("alpha")
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def swept_key(key: PointKey, lr: float | None, sweep: Any) -> tuple[PointKey, PointKey | None]:
    """(the run's point key, the point without the rate): a swept run's method cell names its rate."""
    if not sweep or "lr" not in sweep or lr is None:
        return key, None
    task, model, method, rank, precision = key
    return (task, model, f"{method} lr={lr:g}", rank, precision), key


def _val_values(values: Any) -> dict[str, float]:
    out = {}
    for name, value in (values or {}).items():
        if name in METRICS and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def run_from_record(rec: Record, where: str = "") -> Run:
    spec, profile = rec.spec, rec.profile
    primary, task_metrics = _task_info(rec)
    status, error = _non_finite(rec.status, rec.error, rec.metrics)
    flags = [str(f) for f in rec.flags]
    spread = step_time_spread(profile)
    if spread is not None and spread > NOISY_TIMING_SPREAD:
        flags.append("noisy_timing")
    other = (profile.host_cpu_train or {}).get("other_cpu_share")
    if other is not None and other > BUSY_HOST_SHARE:
        flags.append("busy_host")
    lr = (spec.get("train") or {}).get("lr")
    lr = float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None
    key, sweep_key = swept_key(
        (spec["task"], spec["model"]["name"], spec["method"], spec["rank"], spec["precision"]), lr, spec.get("sweep")
    )
    return Run(
        run_id=rec.run_id,
        key=key,
        sweep_key=sweep_key,
        lr=lr,
        val_values=_val_values(rec.val_metrics),
        seed=spec.get("seed"),
        status=status,
        values=record_values(rec, where or rec.run_id),
        primary=primary,
        task_metrics=task_metrics,
        flags=tuple(flags),
        mem_source=peak_memory(profile, "train")[1],
        timing_spread=spread,
        error=error,
        recipe=recipe_hash(spec),  # from the spec, not the stored field: records of older versions compare alike
        alpha=_alpha(rec),
        ranks=_ranks(profile),
    )


def _ranks(profile: Profile) -> str | None:
    """``"2 fsdp"`` for a run over several processes (``profile.distributed``), else None."""
    dist = profile.distributed
    return None if dist is None else f"{dist.world_size} {dist.strategy}"


def _num(text: str | None) -> float | None:
    """A finite number, or None for an empty cell (a NaN/Inf cell is read by :func:`_non_finite`)."""
    if text is None or text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _raw(text: str | None) -> float | None:
    try:
        return None if text in (None, "") else float(text)  # type: ignore[arg-type]
    except ValueError:
        return None


def runs_from_csv(path: Path) -> list[Run]:
    """Runs from a ``runs.csv``: every column named after a registered metric is a value."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            # Text cells that lorabench neutralised against formula injection read back raw.
            rows = [{csv_unneutralise(k): csv_unneutralise(v) for k, v in row.items()} for row in reader]
            header = [csv_unneutralise(h) for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not header:
        raise UsageError(f"{path} is empty: not a lorabench runs.csv")
    need = {"run_id", "status", *POINT}
    if not need <= set(header):
        raise UsageError(f"{path} is not a lorabench runs.csv (missing {', '.join(sorted(need - set(header)))})")
    runs = []
    for i, row in enumerate(rows, start=2):
        rank = _num(row["rank"])
        task_metrics = tuple(m for m in (row.get("task_metrics") or "").split(";") if m)
        # pandas writes NaN as an empty cell: a primary metric the row names but leaves empty is NaN.
        primary = row.get("primary_metric") or None
        metrics = {m: math.nan if m == primary and not row.get(m) else _raw(row.get(m)) for m in quality_metrics()}
        status, error = _non_finite(row["status"], row.get("error") or None, metrics)
        lr = _num(row.get("lr"))
        key, sweep_key = swept_key(
            (row["task"], row["model"], row["method"], None if rank is None else int(rank), row["precision"]),
            lr,
            (row.get("sweep") or "").split(";"),
        )
        vals = {m: v for m in quality_metrics() if (v := _num(row.get(f"val_{m}"))) is not None}
        runs.append(
            Run(
                run_id=row["run_id"],
                key=key,
                sweep_key=sweep_key,
                lr=lr,
                val_values=vals,
                seed=None if _num(row.get("seed")) is None else int(float(row["seed"])),
                status=status,
                values={n: v for n in METRICS if (v := _num(row.get(n))) is not None},
                primary=primary,
                task_metrics=task_metrics or tuple(m for m in quality_metrics() if _num(row.get(m)) is not None),
                flags=tuple(f for f in (row.get("flags") or "").split(";") if f),
                mem_source=row.get("mem_source") or None,
                timing_spread=_num(row.get("step_spread")),
                error=error,
                recipe=row.get("recipe") or None,
                alpha=_num(row.get("alpha")),
            )
        )
        if not row["run_id"]:
            raise UsageError(f"{path}:{i}: empty run_id")
    return runs


def load_runs(path: Path | str, run_ids: set[str] | None = None) -> list[Run]:
    """Runs of a result set: a results directory or a runs.csv. Exit-2 errors on bad input."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix != ".csv":
            raise UsageError(f"{path}: expected a results directory or a runs.csv")
        runs = runs_from_csv(path)
    else:
        runs = [run_from_record(r, str(path / "runs" / r.run_id / "record.json")) for r in load_records(path)]
    if run_ids is not None:
        runs = [r for r in runs if r.run_id in run_ids]
    return runs


def plan_run_ids(out: Path) -> set[str] | None:
    """run_ids of the plan last run into ``out`` (its plan.json), or None where it has none.

    A directory rerun after a suite change keeps the old suite's records (resume needs
    them); its plan.json says which records are the suite's now.
    """
    plan = Path(out) / "plan.json"
    if not plan.is_file():
        return None
    try:
        return {str(p["run_id"]) for p in json.loads(plan.read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{plan}: unreadable plan; rerun the suite or remove the file") from None


@dataclass
class ResultSet:
    """The runs a gate judges, and the records it set aside because the plan does not list them."""

    path: Path
    runs: list[Run]
    ignored: list[Run]


def load_result_set(path: Path | str) -> ResultSet:
    """A directory's runs limited to its plan.json (when it has one); a runs.csv as written.

    Exit 2 when nothing is left: an empty set compared with anything says "ok" about nothing.
    """
    path = Path(path)
    every = load_runs(path)
    ids = plan_run_ids(path) if path.is_dir() else None
    runs = every if ids is None else [r for r in every if r.run_id in ids]
    ignored = [] if ids is None else [r for r in every if r.run_id not in ids]
    if not runs:
        what = "no run of its plan.json has a record" if ids is not None and every else "no runs"
        raise UsageError(f"{path}: {what}; nothing to compare")
    return ResultSet(path, runs, ignored)


def group(runs: list[Run]) -> list[Point]:
    """Points in first-seen order, each with every registered metric aggregated over successful seeds."""
    points: dict[PointKey, Point] = {}
    for r in runs:
        points.setdefault(r.key, Point(r.key, [])).runs.append(r)
    for p in points.values():
        names = {n for r in p.ok for n in r.values}
        for name in names:
            agg = aggregate(r.values.get(name) for r in p.ok)
            if agg is not None:
                p.aggs[name] = agg
    return list(points.values())


def sort_points(points: list[Point], metric: str | None) -> list[Point]:
    """Best first by ``metric`` (its registered direction); points without it (failures) last, by rank."""
    m = METRICS.get(metric) if metric else None

    def key(p: Point) -> tuple[Any, ...]:
        agg = p.aggs.get(metric) if metric else None
        v = m.sort_key(agg.mean) if (m and agg) else math.inf
        _task, model, method, rank, precision = p.key
        return (v, model, method, -1 if rank is None else rank, precision)

    return sorted(points, key=key)
