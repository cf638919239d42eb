"""Model selection over a learning-rate sweep: chosen on validation, reported on test.

A suite that sweeps ``lr`` (``methods.<m>.train.lr: [...]`` or ``lr`` in the matrix)
runs every rate as its own grid point (the method cell names the rate). With
``select: {metric: M, over: [lr]}`` the leaderboard shows one row per point and task:
the rate whose mean validation ``M`` over seeds is best (direction from the metric
registry), with that rate's *test* scores. Nothing is stored: the choice is recomputed
from the records every time, so resume, ``check`` and ``compare`` (which match every
rate on its own) are unchanged.

The rule, in order:

1. A rate is *eligible* when every recorded seed succeeded and has a finite validation
   ``M``. A rate that failed, diverged or ran out of memory on any seed is not chosen
   (a rate that breaks on some seeds is not one to recommend); the drill-down says why.
2. Eligible rates are compared on the seeds they *all* have (a rate still missing a
   seed is compared on the shared ones, so no rate wins for having luckier seeds). If
   they share none, each is compared on its own seeds, and the note says so.
3. Best mean validation ``M`` wins; an exact tie goes to the *smaller* rate (the more
   conservative choice, and deterministic whatever the order of the records).
4. No eligible rate: the row says so and shows the failures; no test score is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lorabench.metrics import METRICS
from lorabench.report.results import Point, PointKey
from lorabench.stats import aggregate


@dataclass
class Candidate:
    """One rate of a swept point: its runs over seeds and their validation scores."""

    lr: float
    point: Point
    val: dict[Any, float]  # seed -> validation value, successful seeds only
    reason: str | None = None  # why it is not eligible; None when it is
    score: float | None = None  # mean validation value over the compared seeds

    @property
    def eligible(self) -> bool:
        return self.reason is None


@dataclass
class Selection:
    """The choice for one point and task."""

    key: PointKey  # the point without its rate
    metric: str
    candidates: list[Candidate]  # by rate, ascending
    chosen: Candidate | None
    seeds: tuple[Any, ...] = ()  # the seeds the eligible rates were compared on
    notes: list[str] = field(default_factory=list)


def _candidate(lr: float, point: Point, metric: str) -> Candidate:
    val = {r.seed: r.val_values[metric] for r in point.ok if math.isfinite(r.val_values.get(metric, math.nan))}
    cand = Candidate(lr=lr, point=point, val=val)
    if point.n != len(point.runs):
        cand.reason = f"not every seed succeeded ({point.status})"
    elif len(val) != len(point.runs):
        cand.reason = f"no validation {metric} (does the task declare val_fraction or val_file?)"
    return cand


def choose(key: PointKey, points: list[Point], metric: str) -> Selection:
    """Apply the module's rule to the rates of one point (``points``: one per rate)."""
    m = METRICS.get(metric)
    cands = sorted(
        (_candidate(p.runs[0].lr if p.runs[0].lr is not None else math.nan, p, metric) for p in points),
        key=lambda c: c.lr,
    )
    sel = Selection(key=key, metric=metric, candidates=cands, chosen=None)
    ok = [c for c in cands if c.eligible]
    if not ok:
        sel.notes.append("no rate is eligible: every rate failed on some seed or lacks a validation score")
        return sel
    shared = set.intersection(*(set(c.val) for c in ok))
    if not shared:
        sel.notes.append("the eligible rates share no seed: each is compared on its own seeds")
    sel.seeds = tuple(sorted(shared, key=lambda s: (s is None, s))) if shared else ()
    for c in ok:
        vals = [v for s, v in c.val.items() if not shared or s in shared]
        c.score = sum(vals) / len(vals)
    if any(len(c.val) != len(shared) for c in ok) and shared:
        sel.notes.append(f"compared on the seeds every eligible rate has ({', '.join(map(str, sel.seeds))})")
    best = min(ok, key=lambda c: (m.sort_key(c.score), c.lr))
    if sum(1 for c in ok if c.score == best.score) > 1:
        sel.notes.append(f"tie on validation {metric}: the smaller rate wins")
    sel.chosen = best
    return sel


def select(points: list[Point], metric: str) -> tuple[list[Point], list[Selection]]:
    """(the leaderboard's points, the selections): each swept point collapsed to its chosen rate.

    Points that are not swept pass through unchanged. A chosen point keeps the chosen
    rate's runs and aggregates (test scores) under a key whose method cell names the
    rate; a point with no eligible rate keeps every run and no scores.
    """
    out: list[Point] = []
    swept: dict[PointKey, list[Point]] = {}
    order: list[PointKey | Point] = []
    for p in points:
        base = p.runs[0].sweep_key if p.runs else None
        if base is None:
            order.append(p)
            continue
        if base not in swept:
            order.append(base)
        swept.setdefault(base, []).append(p)
    selections = []
    for item in order:
        if isinstance(item, Point):
            out.append(item)
            continue
        sel = choose(item, swept[item], metric)
        selections.append(sel)
        task, model, method, rank, precision = item
        if sel.chosen is not None:
            chosen = sel.chosen.point
            label = f"{method} (lr={sel.chosen.lr:g} selected)"
            out.append(Point((task, model, label, rank, precision), chosen.runs, dict(chosen.aggs), sel))
        else:
            runs = [r for c in sel.candidates for r in c.point.runs]
            out.append(Point((task, model, f"{method} (no rate selectable)", rank, precision), runs, {}, sel))
    return out, selections


def selection_markdown(selections: list[Selection]) -> str:
    """The sweep behind each selected row: every rate's validation and test scores, and why it won or not."""
    if not selections:
        return ""
    lines = ["## Learning-rate selection", ""]
    for sel in selections:
        task, model, method, rank, precision = sel.key
        m = METRICS.get(sel.metric)
        primary = sel.candidates[0].point.primary if sel.candidates else None
        name = f"{model}/{method if rank is None else f'{method}-r{rank}'}/{precision}/{task}"
        lines += [f"**{name}**: chosen on validation {sel.metric} ({m.direction}); test scores reported.", ""]
        head = f"| lr | seeds | validation {sel.metric} | test {primary or '-'} | |"
        lines += [head, "|---|---|---|---|---|"]
        for c in sel.candidates:
            val = aggregate(c.val.values())
            test = c.point.aggs.get(primary) if primary else None
            mark = "selected" if c is sel.chosen else (c.reason or "")
            lines.append(
                f"| {c.lr:g} | {c.point.n}/{len(c.point.runs)} | {m.format_agg(val) if val else '-'} | "
                f"{METRICS.get(primary).format_agg(test) if test and primary else '-'} | {mark} |"
            )
        lines.append("")
        lines += [f"_{n}_" for n in sel.notes] + ([""] if sel.notes else [])
    return "\n".join(lines)


def sweep_rows(sel: Selection) -> dict[str, Any]:
    """The drill-down's view of one selection: a row per rate, formatted by the metric registry."""
    m = METRICS.get(sel.metric)
    primary = sel.candidates[0].point.primary if sel.candidates else None
    rows = []
    for c in sel.candidates:
        val = aggregate(c.val.values())
        test = c.point.aggs.get(primary) if primary else None
        rows.append(
            {
                "lr": f"{c.lr:g}",
                "seeds": f"{c.point.n}/{len(c.point.runs)}",
                "val": m.format_agg(val) if val else "-",
                "test": METRICS.get(primary).format_agg(test) if test and primary else "-",
                "note": "selected" if c is sel.chosen else (c.reason or ""),
            }
        )
    return {"metric": sel.metric, "direction": m.direction, "test_metric": primary, "rows": rows, "notes": sel.notes}


def read_select_block(out_dir: Path) -> dict[str, Any] | None:
    """The raw ``select`` mapping of the suite last run into ``out_dir`` (its ``suite.yaml`` copy), else None.

    Only that key is read: a report must not fail because the rest of an old suite no
    longer validates. A copy that cannot be read gives None, never a guess.
    """
    path = Path(out_dir) / "suite.yaml"
    if not path.is_file() or path.is_symlink():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    sel = raw.get("select") if isinstance(raw, dict) else None
    return sel if isinstance(sel, dict) else None


def load_select(out_dir: Path) -> str | None:
    """The ``select.metric`` of the suite last run into ``out_dir``, else None (every rate stays a row of its own)."""
    sel = read_select_block(out_dir)
    metric = sel.get("metric") if sel is not None else None
    return metric if isinstance(metric, str) and metric in METRICS else None


__all__ = [
    "Candidate",
    "Selection",
    "choose",
    "load_select",
    "read_select_block",
    "select",
    "selection_markdown",
    "sweep_rows",
]
