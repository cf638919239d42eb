"""Aggregate records over seeds into one leaderboard row per grid point.

Sorting and "best" use each metric's direction from the metric registry.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lorabench.metrics import METRICS
from lorabench.record import flat_row

POINT = ["task", "model", "method", "rank", "precision"]
COST = [
    "trainable_pct",
    "trainable_params",
    "peak_mem_train_mb",
    "tokens_per_s",
    "samples_per_s",
    "train_s",
    "eval_s",
    "adapter_bytes",
]


def primary_metric(rec: dict[str, Any]) -> str | None:
    from lorabench.tasks import TASK_TYPES

    ttype = rec["spec"]["task_options"].get("type")
    if ttype in TASK_TYPES:
        return TASK_TYPES.get(ttype).primary_metric
    metrics = rec.get("metrics") or {}
    return next(iter(metrics), None)


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run (the runs.csv content) plus the derived ``peak_mem_train_mb``."""
    rows = [flat_row(r) for r in records]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["rank"] = df["rank"].astype("Int64")

    # The memory a user budgets for: NVML per-process on GPU (includes the CUDA context),
    # then the allocator's reserved pool, then host RSS on CPU-only runs.
    def best(row: pd.Series, phase: str) -> tuple[float | None, str | None]:
        for src in ("nvml", "reserved", "rss"):
            v = row.get(f"peak_{src}_{phase}_mb")
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                return v, src
        return None, None

    df["peak_mem_train_mb"] = [best(r, "train")[0] for _, r in df.iterrows()]
    df["mem_source"] = [best(r, "train")[1] for _, r in df.iterrows()]
    return df


def _fmt(mean: float, std: float, n: int, spec: str) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if n > 1 and std is not None and not math.isnan(std):
        return f"{mean:{spec}} ± {std:{spec}}"
    return f"{mean:{spec}}"


def leaderboard(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric frame with mean/std/n columns, display frame with 'mean ± std' strings)."""
    df = runs_frame(records)
    if df.empty:
        return df, df
    prim = {r["spec"]["task"]: primary_metric(r) for r in records}
    metric_cols = [c for c in df.columns if c in METRICS and METRICS.get(c).kind == "quality"]
    numeric, display = [], []
    for key, grp in df.groupby(POINT, dropna=False, sort=False):
        ok = grp[grp["status"] == "success"]
        counts = grp["status"].value_counts()
        status = "success" if len(ok) == len(grp) else ", ".join(f"{s} {n}/{len(grp)}" for s, n in counts.items())
        nrow: dict[str, Any] = dict(zip(POINT, key))
        nrow.update(n=len(ok), seeds=len(grp), status=status, mem_source=ok["mem_source"].iloc[0] if len(ok) else None)
        drow: dict[str, Any] = dict(nrow)
        drow["rank"] = "-" if pd.isna(nrow["rank"]) else int(nrow["rank"])
        for col in [*metric_cols, *COST]:
            vals = pd.to_numeric(ok[col], errors="coerce").dropna() if col in ok else pd.Series(dtype=float)
            mean = float(vals.mean()) if len(vals) else float("nan")
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            nrow[f"{col}_mean"], nrow[f"{col}_std"] = mean, std
            spec = METRICS.get(col).fmt if col in METRICS else ".4g"
            if col == "trainable_params" or col == "adapter_bytes":
                spec = ",.0f"
            drow[col] = _fmt(mean, std, len(vals), spec)
        nrow["primary_metric"] = drow["primary_metric"] = prim.get(key[0])
        numeric.append(nrow)
        display.append(drow)
    num = pd.DataFrame(numeric)
    disp = pd.DataFrame(display)

    # Best first within each task, by that task's primary metric and its registered direction.
    def sort_key(i: int) -> tuple[Any, ...]:
        row = num.iloc[i]
        m = row["primary_metric"]
        v = row.get(f"{m}_mean", float("nan")) if m else float("nan")
        if v is None or math.isnan(v):
            return (row["task"], 1, 0.0)
        return (row["task"], 0, -v if METRICS.get(m).higher_is_better else v)

    order = sorted(range(len(num)), key=sort_key)
    num, disp = num.iloc[order].reset_index(drop=True), disp.iloc[order].reset_index(drop=True)
    keep = [c for c in disp.columns if not disp[c].astype(str).eq("-").all() or c in POINT]
    return num, disp[keep]


def markdown_table(disp: pd.DataFrame) -> str:
    from tabulate import tabulate

    if disp.empty:
        return "_no runs_\n"
    cols = [c for c in disp.columns if c not in ("primary_metric", "seeds")]
    return tabulate(disp[cols], headers="keys", tablefmt="github", showindex=False) + "\n"
