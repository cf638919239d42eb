"""Leaderboards: one table per task, its metrics only, primary first, best first.

Direction, format and noise of every column come from the metric registry. A point's
Pareto mark (memory vs the primary metric) ignores differences inside the noise: a
difference counts only beyond the metric's registered noise and, with several seeds,
where the seed bands (95% t interval from 3 seeds, min-max with 2) do not overlap.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from lorabench.metrics import METRICS, Metric, peak_memory, record_values, step_time_spread
from lorabench.record import flat_row
from lorabench.record_data import Record
from lorabench.report.escape import md_cell, md_text
from lorabench.report.results import POINT, REPORT_FLAGS, Point, group, run_from_record, sort_points
from lorabench.report.select import select, selection_markdown
from lorabench.sanity import FLAG_MEANINGS
from lorabench.stats import Agg

MEMORY = "peak_mem_train_mb"
# Cost columns of every task table, after the task's own metrics.
COST_COLUMNS = ("trainable_pct", "trainable_params", "total_params", MEMORY, "tokens_per_s", "train_s", "adapter_bytes")

# Time-to-target columns (shown where some run has them) and their short headers.
TARGET_COLUMNS = {
    "steps_to_target": "steps",
    "tokens_to_target": "tokens",
    "seconds_to_target": "s",
    "joules_to_target": "J",
}


def flag_meanings() -> dict[str, str]:
    return {**FLAG_MEANINGS, **REPORT_FLAGS}


def flag_marker(flag: str) -> str:
    """A short marker: the initials of the flag's words (``did_not_learn`` -> ``DNL``)."""
    return "".join(w[0] for w in flag.split("_") if w).upper() or flag


def runs_frame(records: list[Record]) -> pd.DataFrame:
    """One row per run (runs.csv): every record field flat, every registered figure, integers as integers."""
    rows = []
    for rec in records:
        run = run_from_record(rec)
        row = flat_row(rec)
        # Every registered figure as the registry derives it (tokens/s from the median step),
        # over the profile's raw field of the same name: runs.csv agrees with the leaderboard.
        for name, value in record_values(rec).items():
            row[name] = value
        row["mem_source"] = peak_memory(rec.profile, "train")[1]
        row["step_spread"] = step_time_spread(rec.profile)
        row["status"], row["error"] = run.status, run.error  # a NaN "success" is written as diverged
        row["primary_metric"] = run.primary
        row["task_metrics"] = ";".join(run.task_metrics)
        row["flags"] = ";".join(run.flags)
        row["recipe"] = run.recipe
        row["alpha"] = run.alpha
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("rank", "seed", "trainable_params", "total_params", "adapter_bytes"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    return df


def _differs(m: Metric, a: Agg, b: Agg) -> int:
    """+1 when ``b`` is better than ``a`` beyond the noise, -1 when worse, 0 inside it.

    Beyond the noise means both: more than the metric's registered noise (a tolerance, or
    3% of host RSS), and, with two or more seeds on each side, bands that do not overlap
    (:meth:`Agg.band`: the 95% t interval from 3 seeds, the observed range with 2). Two
    seeds that happen to agree exactly have a zero-width band, which alone would make any
    difference "significant".
    """
    if abs(b.mean - a.mean) <= m.noise(a.mean):
        return 0
    if a.n >= 2 and b.n >= 2:
        alo, ahi, _ = a.band()
        blo, bhi, _ = b.band()
        if alo <= bhi and blo <= ahi:
            return 0
    return 1 if m.better(b.mean, a.mean) else -1


def inside_noise(values: list[float], metric: str) -> bool:
    """Whether all of ``values`` lie within ``metric``'s registered noise of the smallest.

    The plots' "inside the noise" notes read this, with the same noise as the Pareto mark
    (:func:`_differs`), so a panel spanning 534-539 MiB of host RSS says so.
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return False
    return max(finite) - min(finite) <= METRICS.get(metric).noise(min(finite))


def pareto_points(points: list[Point], metric: str, cost: str = MEMORY) -> set[int]:
    """Indices of the points no other point beats on (``cost``, ``metric``) beyond the noise."""
    mq, mc = METRICS.get(metric), METRICS.get(cost)
    cand = [i for i, p in enumerate(points) if metric in p.aggs and cost in p.aggs]
    front = set()
    for i in cand:
        a = points[i]
        dominated = False
        for j in cand:
            if j == i:
                continue
            b = points[j]
            dq, dc = _differs(mq, a.aggs[metric], b.aggs[metric]), _differs(mc, a.aggs[cost], b.aggs[cost])
            if dq >= 0 and dc >= 0 and (dq > 0 or dc > 0):
                dominated = True
                break
        if not dominated:
            front.add(i)
    return front


def by_task(points: list[Point]) -> dict[str, list[Point]]:
    """Points per task (tasks sorted), each list best first by the task's primary metric."""
    tasks: dict[str, list[Point]] = {}
    for p in points:
        tasks.setdefault(p.task, []).append(p)
    return {t: sort_points(ps, next((p.primary for p in ps if p.primary), None)) for t, ps in sorted(tasks.items())}


def _task_metrics(points: list[Point]) -> list[str]:
    """The task's metrics, primary first; others seen in the records after them."""
    primary = next((p.primary for p in points if p.primary), None)
    names = [primary] if primary else []
    for p in points:
        names += [m for m in p.task_metrics if m not in names]
    for p in points:
        names += [m for m in p.aggs if METRICS.get(m).kind == "quality" and m not in names]
    return names


def _cell(name: str, p: Point, ci: bool) -> str:
    agg = p.aggs.get(name)
    if agg is None:
        return "-"
    m = METRICS.get(name)
    return m.format_agg(agg) if ci else m.format(agg.mean)


def task_table(points: list[Point]) -> tuple[pd.DataFrame, list[str]]:
    """(display frame, flags used) for one task's points, already sorted."""
    metrics = _task_metrics(points)
    primary = metrics[0] if metrics else None
    front = pareto_points(points, primary) if primary else set()
    sources = sorted({p.mem_source for p in points if p.mem_source})
    # A run over several processes records each rank's peak; the column holds the largest rank's.
    has_ranks = any(p.ranks not in ("1", "-") for p in points)
    mem_header = f"peak train MiB{' per rank' if has_ranks else ''} ({', '.join(sources) or '-'})"
    flags_used: list[str] = []
    # Device-only figures get a column only where some run has them (null on CPU).
    has_mfu = any("mfu" in p.aggs for p in points)
    has_alpha = any(p.alpha != "-" for p in points)  # the resolved LoRA alpha (alpha_ratio x rank, ...)
    has_estimate = any("estimate_mb" in p.aggs for p in points) and sources != ["rss"]
    # The prediction beside the measurement where an allocator measured (never beside host RSS).
    has_predicted = any("mem_vs_predicted" in p.aggs for p in points)
    # Time-to-target (lorabench.report.target): where some run of the task has an eval curve.
    to_target = [n for n in TARGET_COLUMNS if any(n in p.aggs for p in points)]
    rows = []
    for i, p in enumerate(points):
        _task, model, method, rank, precision = p.key
        row: dict[str, Any] = {
            "model": model,
            "method": method,
            "rank": "-" if rank is None else str(rank),
            "precision": precision,
            **({"α": p.alpha} if has_alpha else {}),
            **({"processes": p.ranks} if has_ranks else {}),
            "n": f"{p.n}/{len(p.runs)}" if p.n != len(p.runs) else str(p.n),
            "status": p.status,
        }
        for name in metrics:
            row[METRICS.get(name).header] = _cell(name, p, ci=True)
        row["trainable %"] = _cell("trainable_pct", p, ci=False)
        row["trainable params"] = _cell("trainable_params", p, ci=False)
        row["total params"] = _cell("total_params", p, ci=False)
        row[mem_header] = _cell(MEMORY, p, ci=False)
        if has_estimate:
            row["estimate MiB"] = _cell("estimate_mb", p, ci=False)
        if has_predicted:
            row["predicted MiB"] = _cell("predicted_mb", p, ci=False)
            row["measured/predicted"] = _cell("mem_vs_predicted", p, ci=False)
        row["tokens/s"] = _cell("tokens_per_s", p, ci=True)
        if has_mfu:
            row["MFU"] = _cell("mfu", p, ci=False)
        spread = p.timing_spread
        step = _cell("step_ms", p, ci=False)
        row["step ms (spread)"] = step if spread is None or step == "-" else f"{step} ({spread:.0%})"
        row["train s"] = _cell("train_s", p, ci=False)
        row["adapter bytes"] = _cell("adapter_bytes", p, ci=False)
        for name in to_target:
            reached = sum(1 for r in p.ok if name in r.values)
            cell = _cell(name, p, ci=False)
            row[f"to target: {TARGET_COLUMNS[name]}"] = cell if reached == p.n else f"{cell} ({reached}/{p.n} reached)"
        row["pareto"] = "*" if i in front else ""
        for f in p.flags:
            if f not in flags_used:
                flags_used.append(f)
        row["flags"] = " ".join(flag_marker(f) for f in p.flags)
        rows.append(row)
    return pd.DataFrame(rows), flags_used


def numeric_frame(points: list[Point]) -> pd.DataFrame:
    """leaderboard.csv and the plots' input: one row per point, mean/std/n/ci per metric."""
    rows = []
    for task, pts in by_task(points).items():
        metrics = _task_metrics(pts)
        front = pareto_points(pts, metrics[0]) if metrics else set()
        for i, p in enumerate(pts):
            row: dict[str, Any] = dict(zip(POINT, p.key))
            if p.selection is not None:  # a row chosen out of a sweep: the plain method, the rate apart
                row["method"] = p.selection.key[2]
                row["lr"] = p.selection.chosen.lr if p.selection.chosen else math.nan
                row["selected_on"] = f"val_{p.selection.metric}"
            row.update(
                n=p.n,
                seeds=len(p.runs),
                status=p.status,
                primary_metric=p.primary,
                mem_source=p.mem_source,
                alpha=p.alpha,
                pareto=i in front,
                step_spread=p.timing_spread,
                flags=";".join(p.flags),
            )
            for name in METRICS:
                agg = p.aggs.get(name)
                row[f"{name}_mean"] = agg.mean if agg else math.nan
                row[f"{name}_std"] = agg.std if agg and agg.std is not None else math.nan
                row[f"{name}_ci95"] = agg.half if agg and agg.half is not None else math.nan
                row[f"{name}_n"] = agg.n if agg else 0
                # The band the tables and plots show (Agg.band: t95 from 3 seeds, min-max with 2).
                lo, hi, _kind = agg.band() if agg else (math.nan, math.nan, "")
                row[f"{name}_lo"], row[f"{name}_hi"] = (lo, hi) if agg and agg.n >= 2 else (math.nan, math.nan)
            row["task"] = task
            rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        # Drop figures no run has; the point's own columns stay (rank is empty for rankless methods).
        df = df.drop(columns=[c for c in df.columns if c not in POINT and df[c].isna().all()])
        df["rank"] = pd.to_numeric(df["rank"], errors="coerce").astype("Int64")
    return df


def leaderboard_markdown(points: list[Point]) -> str:
    """One section per task: heading, table, how to read it, and the legend of its flags."""

    if not points:
        return "_no runs_\n"
    meanings = flag_meanings()
    out = []
    for task, pts in by_task(points).items():
        disp, flags = task_table(pts)
        primary = next((p.primary for p in pts if p.primary), None)
        disp = disp.map(lambda v: md_cell(v) if isinstance(v, str) else v)
        disp.columns = [md_cell(c) for c in disp.columns]
        head = f"## {md_text(task)}"
        if primary:
            head += f" (sorted by {primary}, {METRICS.get(primary).direction})"
        out += [head, "", tabulate(disp, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), ""]
        if any(p.n >= 2 for p in pts):
            out += [
                "Quality and tokens/s: mean over successful seeds (n); with 3 or more seeds ± the 95% Student-t "
                "interval, with 2 the observed range (min–max) in brackets.",
                "",
            ]
        if flags:
            legend = "; ".join(f"**{flag_marker(f)}** {f}: {meanings.get(f, 'no description')}" for f in flags)
            out += [f"Flags: {legend}.", ""]
    return "\n".join(out)


def leaderboard(records: list[dict[str, Any]], select_metric: str | None = None) -> tuple[pd.DataFrame, str]:
    """(numeric frame, markdown) of the records' leaderboard.

    With ``select_metric`` (the suite's ``select.metric``), each learning-rate sweep is
    one row: the rate chosen on that validation metric, with its test scores
    (:mod:`lorabench.report.select`); every rate's figures follow the tables.
    """

    points = group([run_from_record(r) for r in records])
    if not select_metric:
        return numeric_frame(points), leaderboard_markdown(points)
    points, selections = select(points, select_metric)
    board = leaderboard_markdown(points)
    if selections:
        m = METRICS.get(select_metric)
        board += (
            f"\n`(lr=… selected)`: the learning rate chosen out of the sweep on validation {select_metric} "
            f"({m.direction}, mean over seeds); the row's scores are that rate's test scores.\n\n"
            + selection_markdown(selections)
        )
    return numeric_frame(points), board
