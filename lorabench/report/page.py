"""report.html: one self-contained interactive page built from the records alone.

Everything the page shows is computed here, with the same aggregation, formatting and
Pareto rule as leaderboard.md (``results.group``, ``Metric.format_agg``,
``leaderboard.pareto_points``); the page's script only sorts, filters and draws. The
charting library is Plotly's own ``plotly.min.js`` from the ``plotly`` package, inlined
gzip-compressed (the browser's DecompressionStream unpacks it), so the page needs no
network and works from ``file://`` at about a third of the raw library's size.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import itertools
import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from lorabench.metrics import METRICS, Metric
from lorabench.record_data import Record
from lorabench.report.leaderboard import (
    MEMORY,
    _differs,
    _task_metrics,
    by_task,
    flag_marker,
    flag_meanings,
    pareto_points,
)
from lorabench.report.results import Point, group, point_label, run_from_record
from lorabench.report.select import select, sweep_rows
from lorabench.stats import aggregate

# Cost axes of the Pareto chart (the list), in the order the selector offers them.
PARETO_COSTS = (MEMORY, "tokens_per_s", "train_s", "trainable_pct", "adapter_bytes")
# Cost columns of the leaderboard tables, after the task's metrics.
TABLE_COSTS = (
    "trainable_pct",
    "trainable_params",
    "total_params",
    MEMORY,
    "estimate_mb",
    "predicted_mb",
    "mem_vs_predicted",
    "tokens_per_s",
    "step_ms",
    "mfu",
    "train_s",
    "adapter_bytes",
    "steps_to_target",
    "tokens_to_target",
    "seconds_to_target",
    "joules_to_target",
)
PREDICTIONS_PER_RUN = 3
# Training-recipe fields shown in the configuration table (spec.train keys and labels).
TRAIN_FIELDS = (
    ("lr", "lr"),
    ("steps", "steps"),
    ("epochs", "epochs"),
    ("batch_size", "batch"),
    ("grad_accum", "grad accum"),
    ("max_seq_len", "seq len"),
    ("schedule", "schedule"),
    ("lr_warmup_steps", "lr warm-up"),
    ("warmup_steps", "untimed steps"),  # run, but left out of throughput (not the lr warm-up)
    ("optimizer", "optimizer"),
    ("weight_decay", "weight decay"),
)


def _label(p: Point) -> str:
    return point_label(p.key)


def _value(m: Metric, p: Point, name: str) -> dict[str, Any] | None:
    agg = p.aggs.get(name)
    if agg is None:
        return None
    lo, hi, kind = agg.band()
    return {
        "v": agg.mean,
        "lo": lo,
        "hi": hi,
        "band": kind,
        "n": agg.n,
        "t": m.format_agg(agg),
        "m": m.format(agg.mean),
    }


def _distinct(values: list[Any]) -> str:
    seen: list[str] = []
    for v in values:
        s = "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
        if s not in seen:
            seen.append(s)
    return " / ".join(seen)


def _alpha(rec: Record) -> Any:
    """The LoRA alpha the run used: resolved by the method, else as configured."""
    resolved = (rec.resolved.get("method") or {}).get("lora_alpha")
    return resolved if resolved is not None else (rec.spec.get("method_options") or {}).get("alpha")


def _lr_key(lr: Any) -> tuple[bool, float]:
    return (not isinstance(lr, (int, float)), lr if isinstance(lr, (int, float)) else 0.0)


def config_rows(records: list[Record]) -> list[dict[str, str]]:
    """Per task: the training recipe (distinct values joined by " / " where runs differ)."""
    rows = []
    for task in sorted({r.spec["task"] for r in records}):
        recs = [r for r in records if r.spec["task"] == task]
        row = {"task": task}
        for key, label in TRAIN_FIELDS:
            row[label] = _distinct([r.spec.get("train", {}).get(key) for r in recs])
        # Rates differ per method (a sweep each, or one hand-picked rate each): say whose is whose.
        by_method = {
            m: _distinct(
                sorted(((r.spec.get("train") or {}).get("lr") for r in recs if r.spec["method"] == m), key=_lr_key)
            )
            for m in sorted({r.spec["method"] for r in recs})
        }
        if len(set(by_method.values())) > 1:
            row["lr"] = "; ".join(f"{m}: {v}" for m, v in by_method.items())
        row["steps run"] = _distinct([r.profile.train_steps for r in recs])
        row["alpha"] = _distinct([_alpha(r) for r in recs])
        row["seeds"] = ", ".join(str(s) for s in sorted({r.spec.get("seed") for r in recs}, key=str))
        rows.append(row)
    return rows


def _best_sentence(pts: list[Point], name: str, what: str) -> str | None:
    m = METRICS.get(name)
    have = [p for p in pts if name in p.aggs]
    if not have:
        return None
    best = min(have, key=lambda p: m.sort_key(p.aggs[name].mean))
    ties = [p for p in have if p is not best and _differs(m, best.aggs[name], p.aggs[name]) == 0]
    text = f"{what}: {_label(best)} ({m.format_agg(best.aggs[name])}{' ' + m.unit if m.unit else ''})"
    if ties:
        text += f"; within the noise of it: {', '.join(_label(p) for p in ties[:6])}"
        text += f" and {len(ties) - 6} more" if len(ties) > 6 else ""
    return text + "."


def summary(points: list[Point]) -> list[dict[str, Any]]:
    """Per task, in words: the best point per quality, memory and speed, and the Pareto set."""
    out = []
    for task, pts in by_task(points).items():
        metrics = _task_metrics(pts)
        primary = metrics[0] if metrics else None
        lines = []
        if primary:
            lines.append(_best_sentence(pts, primary, f"Best {primary} ({METRICS.get(primary).direction})"))
        lines.append(_best_sentence(pts, MEMORY, "Least peak training memory"))
        lines.append(_best_sentence(pts, "tokens_per_s", "Fastest (train tokens/s)"))
        if primary:
            front = pareto_points(pts, primary, MEMORY)
            have = [p for p in pts if primary in p.aggs and MEMORY in p.aggs]
            if len(have) == 1:
                lines.append(f"Pareto set ({primary} × peak memory): the only point.")
            elif have and len(front) == len(have):
                lines.append(
                    f"Pareto set ({primary} × peak memory): every point; no point beats another outside the noise "
                    "on both axes, so the front says nothing here."
                )
            elif front:
                lines.append(
                    f"Pareto set ({primary} × peak memory): "
                    + ", ".join(_label(pts[i]) for i in sorted(front))
                    + ". Every other point is beaten outside the noise on one axis and not beaten on the other."
                )
        failed = [p for p in pts if p.status != "success"]
        if failed:
            lines.append("Not all seeds succeeded: " + "; ".join(f"{_label(p)} ({p.status})" for p in failed) + ".")
        dnl = [p for p in pts if "did_not_learn" in p.flags]
        if dnl:
            lines.append("Did not learn (flag DNL): " + ", ".join(_label(p) for p in dnl) + ".")
        out.append({"task": task, "primary": primary, "lines": [x for x in lines if x]})
    return out


def _curve(runs: list[dict[str, Any]], pick: Any) -> dict[str, list[Any]] | None:
    """Mean and band over seeds at each step (steps any seed logged)."""
    at: dict[float, list[float]] = {}
    for r in runs:
        for step, value in pick(r):
            if value is not None:
                at.setdefault(step, []).append(value)
    if not at:
        return None
    steps, mean, lo, hi = [], [], [], []
    for step in sorted(at):
        agg = aggregate(at[step])
        if agg is None:
            continue
        a, b, _ = agg.band()
        steps.append(step)
        mean.append(agg.mean)
        lo.append(a)
        hi.append(b)
    return {"step": steps, "mean": mean, "lo": lo, "hi": hi}


def _quality_cost(runs: list[Record], metric: str) -> dict[str, list[float]] | None:
    """The eval curve against cost, mean over seeds at each step: {x-axis: values, "value": quality}.

    x-axes are ``tokens`` and ``seconds`` (and ``joules`` where every seed measured them);
    the report's time-to-quality chart plots ``value`` against the one chosen.
    """
    keys = {"tokens": "train_tokens", "seconds": "train_s", "joules": "train_j"}
    at: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        for e in r.curves.get("eval") or []:
            if isinstance(e.get(metric), (int, float)) and "train_tokens" in e:
                at.setdefault(e["step"], []).append(e)
    if not at:
        return None
    out: dict[str, list[float]] = {"value": [], **{k: [] for k in keys}}
    for step in sorted(at):
        pts = at[step]
        out["value"].append(sum(p[metric] for p in pts) / len(pts))
        for axis, key in keys.items():
            vals = [p[key] for p in pts if isinstance(p.get(key), (int, float))]
            out[axis].append(sum(vals) / len(vals) if len(vals) == len(pts) else None)  # type: ignore[arg-type]
    return {k: v for k, v in out.items() if all(x is not None for x in v)}


def _targets(records: list[Record]) -> dict[str, dict[str, Any]]:
    """Per task, the time-to-target target the records were measured against (lorabench.report.target)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        ttt = rec.profile.time_to_target
        if isinstance(ttt, dict) and rec.spec["task"] not in out:
            out[rec.spec["task"]] = {k: ttt.get(k) for k in ("metric", "target", "rule")}
    return out


def _train_loss(r: Record) -> list[tuple[float, float]]:
    return [(c[0], c[1]) for c in r.curves.get("train_loss") or []]


def _predictions(out_dir: Path, run_id: str) -> list[dict[str, Any]]:
    path = out_dir / "runs" / run_id / "predictions.jsonl"
    if path.is_symlink() or not path.is_file():
        return []
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in itertools.islice(fh, PREDICTIONS_PER_RUN):
                row = json.loads(line)
                if not isinstance(row, dict):  # a corrupt file shows fewer examples, never stops the report
                    continue
                rows.append({k: str(row.get(k, ""))[:400] for k in ("input", "reference", "prediction") if k in row})
    except (OSError, ValueError):
        return rows
    return rows


def _run_detail(out_dir: Path, rec: Record) -> dict[str, Any]:
    profile = {k: v for k, v in rec.profile.to_dict().items() if k != "step_s"}
    return {
        "run_id": rec.run_id,
        "label": rec.label,
        "seed": rec.spec.get("seed"),
        "status": rec.status,
        "error": rec.error,
        "flags": list(rec.flags),
        "created_at": rec.created_at,
        "spec": rec.spec,
        "resolved": rec.resolved,
        "env": rec.env,
        "profile": profile,
        "metrics": rec.metrics,
        "val_metrics": rec.val_metrics or None,
        "train_loss": _train_loss(rec),
        "eval": rec.curves.get("eval") or [],
        "predictions": _predictions(out_dir, rec.run_id),
    }


def compare_rows(diffs: list[Any]) -> list[dict[str, Any]]:
    """The comparison as rows for the page: formatted by the metric, a mark only on a changed value."""
    rows = []
    for p in diffs:
        label = _label(Point(p.key, []))
        if p.base_status != p.current_status:
            rows.append(
                {
                    "task": p.key[0],
                    "point": label,
                    "metric": "status",
                    "baseline": p.base_status or "absent",
                    "current": p.current_status or "absent",
                    "change": "",
                    "mark": "▼!" if p.base_status == "success" else "▲!",
                    "outside_noise": True,
                }
            )
        for d in p.deltas:
            m = METRICS.get(d.metric)
            changed = d.delta is not None and d.delta != 0 and m.format(d.base) != m.format(d.current)
            mark = ("▲!" if d.verdict == "better" else "▼!") if changed and d.outside_noise else ""
            change = ""
            if changed:
                change = f"{d.rel:+.1%}" if d.rel is not None else f"{d.delta:+g}"
            rows.append(
                {
                    "task": p.key[0],
                    "point": label,
                    "metric": m.header,
                    "baseline": m.format(d.base),
                    "current": m.format(d.current),
                    "change": change,
                    "mark": mark,
                    "outside_noise": bool(changed and d.outside_noise),
                }
            )
    return rows


# Short column headers for the cost figures (the registry's names are for files and CLI flags).
SHORT = {
    "trainable_pct": "trainable %",
    "trainable_params": "trainable params",
    "total_params": "total params",
    MEMORY: "peak train MiB",
    "estimate_mb": "estimate MiB",
    "predicted_mb": "predicted MiB",
    "mem_vs_predicted": "measured/predicted",
    "tokens_per_s": "tokens/s",
    "step_ms": "step ms",
    "mfu": "MFU",
    "train_s": "train s",
    "adapter_bytes": "adapter bytes",
    "peak_mem_eval_mb": "peak eval MiB",
    "samples_per_s": "samples/s",
    "eval_s": "eval s",
}


def _metric_info(name: str) -> dict[str, Any]:
    m = METRICS.get(name)
    return {
        "header": SHORT.get(name, m.header),
        "direction": m.direction,
        "higher": m.higher_is_better,
        "kind": m.kind,
        "description": m.description,
    }


def page_data(
    out_dir: Path,
    records: list[Record],
    env: list[str],
    compare_rows: list[dict[str, Any]] | None = None,
    baseline: str | None = None,
    others: list[Record] | None = None,
    plots: list[Any] | None = None,
    select_metric: str | None = None,
) -> dict[str, Any]:
    """Everything report.html shows, as JSON-ready data.

    With ``select_metric`` a learning-rate sweep is one point (the rate chosen on
    validation), and its drill-down lists every rate (:mod:`lorabench.report.select`).
    """

    runs = [run_from_record(r) for r in records]
    points = group(runs)
    if select_metric:
        points, _ = select(points, select_metric)
    recs = {r.run_id: r for r in records}
    meanings = flag_meanings()
    tasks = by_task(points)
    data_points = []
    pareto: dict[str, dict[str, dict[str, list[int]]]] = {}
    columns: dict[str, list[dict[str, Any]]] = {}
    used = set()
    pid = 0
    for task, pts in tasks.items():
        metrics = _task_metrics(pts)
        costs = [c for c in TABLE_COSTS if any(c in p.aggs for p in pts)]
        if all(p.mem_source == "rss" for p in pts if p.mem_source):
            # an allocator estimate beside host RSS compares unlike things
            costs = [c for c in costs if c not in ("estimate_mb", "predicted_mb")]
        columns[task] = [{"key": n, **_metric_info(n)} for n in metrics + costs]
        ids = list(range(pid, pid + len(pts)))
        pid += len(pts)
        pareto[task] = {}
        for q in metrics:
            pareto[task][q] = {}
            for c in PARETO_COSTS:
                if any(q in p.aggs and c in p.aggs for p in pts):
                    pareto[task][q][c] = sorted(ids[i] for i in pareto_points(pts, q, c))
        front = set(pareto[task].get(metrics[0], {}).get(MEMORY, [])) if metrics else set()
        for i, p in zip(ids, pts):
            _t, model, method, rank, precision = p.key
            prs = [recs[r.run_id] for r in p.runs if r.run_id in recs]
            ok = [r for r in prs if r.status == "success"]
            used.update(p.flags)
            data_points.append(
                {
                    "id": i,
                    "task": task,
                    "model": model,
                    "method": method,
                    "rank": rank,
                    "precision": precision,
                    "label": _label(p),
                    "alpha": p.alpha,
                    "n": p.n,
                    "seeds": len(p.runs),
                    "status": p.status,
                    "flags": p.flags,
                    "markers": [flag_marker(f) for f in p.flags],
                    "mem_source": p.mem_source,
                    "pareto": i in front,
                    "values": {n: v for n in metrics + costs if (v := _value(METRICS.get(n), p, n)) is not None},
                    "runs": [r.run_id for r in p.runs],
                    "sweep": sweep_rows(p.selection) if p.selection is not None else None,
                    # The split curves.eval was measured on (resolved.splits): validation where the task has one.
                    "eval_split": next(
                        (s for r in ok if (s := (r.resolved.get("splits") or {}).get("curves.eval"))), "test"
                    ),
                    "loss": _curve(ok, _train_loss),
                    "eval": _curve(
                        ok,
                        lambda r, q=metrics[0] if metrics else None: [
                            (e["step"], e.get(q)) for e in r.curves.get("eval") or []
                        ],
                    )
                    if metrics
                    else None,
                    "quality_cost": _quality_cost(ok, metrics[0]) if metrics else None,
                }
            )
    created = sorted(r.created_at for r in records if r.created_at)
    sources = sorted({p.mem_source for p in points if p.mem_source})
    notes = [
        "Quality and tokens/s cells: mean over successful seeds; with 3 or more seeds ± the 95% Student-t "
        "interval, with 2 seeds the observed range (min–max) in brackets (a t interval on 2 seeds is 12.7 "
        "standard errors wide), with 1 seed the value alone.",
        "A Pareto mark (◆) needs a difference outside the noise on both axes: the intervals above where there "
        "are several seeds, else the metric's registered tolerance.",
    ]
    if "rss" in sources:
        notes.append(
            "Peak memory is host RSS (a CPU run): it counts the whole Python process, so it cannot show "
            "quantisation's saving (a 4-bit base is a small part of it). Read trainable params, total params and "
            "adapter bytes beside it."
        )
    return {
        "suite": records[0].suite if records else out_dir.name,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "created": [created[0], created[-1]] if created else None,
        "n_runs": len(records),
        "env": env,
        "config": config_rows(records),
        "notes": notes,
        "summary": summary(points),
        "tasks": list(tasks),
        # The charts open on the task with the most points (the one a comparison is about).
        "main_task": max(tasks, key=lambda t: len(tasks[t])) if tasks else None,
        "columns": columns,
        "points": data_points,
        "pareto": pareto,
        "pareto_costs": list(PARETO_COSTS),
        "metrics": {n: _metric_info(n) for n in METRICS},
        "flags": {f: {"marker": flag_marker(f), "meaning": meanings.get(f, "")} for f in sorted(used)},
        "runs": {rid: _run_detail(out_dir, rec) for rid, rec in recs.items()},
        "compare": compare_rows,
        "baseline": baseline,
        "others": [{"label": r.label, "run_id": r.run_id, "status": r.status} for r in others or []],
        "plots": [{"file": f"plots/{p.path.name}", "title": p.title} for p in plots or []],
        "targets": _targets(records),
    }


@functools.lru_cache(maxsize=1)
def plotly_js_gz_b64() -> str:
    """plotly.min.js from the ``plotly`` package, gzip-compressed and base64-encoded (deterministic)."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def _asset(name: str) -> str:
    return resources.files("lorabench.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no ``</`` can close it, no ``<!--`` can open a comment."""
    text = json.dumps(obj, default=str, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(obj: Any) -> Any:
    """NaN/Inf become null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def render_page(data: dict[str, Any]) -> str:
    """The page: template, styles, script, data and the compressed charting library in one file."""

    parts = {
        "TITLE": html.escape(f"lorabench: {data['suite']}"),
        "CSS": _asset("report.css"),
        "DATA": _script_json(_finite(data)),
        "PLOTLY_GZ": plotly_js_gz_b64(),
        "JS": _asset("report.js"),
    }
    # One pass: a placeholder inside the data is never expanded.
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: parts[m.group(1)], _asset("report.html"))
