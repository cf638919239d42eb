"""Compare two result sets point by point, and gate on regressions (``compare`` / ``check``).

Points are matched by grid point (task, model, method, rank, precision), so a baseline
from older code matches a fresh run of the same suite. A delta is "better" or "worse"
in the metric's own registered direction. ``compare`` marks a delta as outside the
noise when the 95% intervals do not overlap (both sides with >= 2 seeds) or, with
fewer seeds, when it exceeds the metric's tolerance. ``check`` fails on every change in
the bad direction beyond the tolerance, on a point missing from the current set, and on
a point that now fails; improvements are listed and never fail
(pytest-benchmark's ``--benchmark-compare-fail``, with the direction from the registry).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tabulate import tabulate

from lorabench.errors import UsageError
from lorabench.metrics import METRICS
from lorabench.report.escape import md_cell, md_text
from lorabench.report.results import Point, PointKey, group
from lorabench.stats import Agg


@dataclass(frozen=True)
class Tolerance:
    """An allowed change: absolute, or relative to the baseline value."""

    value: float
    relative: bool

    def allowed(self, base: float) -> float:
        return self.value * abs(base) if self.relative else self.value

    def __str__(self) -> str:
        return f"{100 * self.value:.4g}%" if self.relative else f"{self.value:.4g}"


_TOL = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


def parse_tolerances(items: list[str]) -> dict[str, Tolerance]:
    """``METRIC=ABS`` or ``METRIC=REL%`` items; a bad item or unknown metric is a usage error.

    A tolerance must be finite and non-negative: ``perplexity=1e999`` is infinity, which
    would turn the gate off for that metric without a word.
    """
    out: dict[str, Tolerance] = {}
    for item in items:
        m = _TOL.match(item)
        if not m:
            raise UsageError(f"--tol {item!r}: expected METRIC=ABS or METRIC=REL% (e.g. perplexity=2%, accuracy=0.01)")
        name, num, pct = m.groups()
        if name not in METRICS:
            raise UsageError(f"--tol {item!r}: {METRICS.unknown_message(name)}")
        value = float(num)
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--tol {item!r}: a tolerance is a finite number >= 0, got {value}")
        out[name] = Tolerance(value / 100 if pct else value, relative=bool(pct))
    return out


def tolerance_warnings(tols: dict[str, Tolerance]) -> list[str]:
    """Tolerances so loose that the gate passes almost anything: said out loud, not refused."""
    return [
        f"--tol {name}={tol}: a relative tolerance over 100% lets {name} more than double (or fall to zero) "
        "without failing"
        for name, tol in tols.items()
        if tol.relative and tol.value > 1
    ]


def default_tolerance(name: str, base: float, tols: dict[str, Tolerance]) -> float | None:
    """The tolerance ``check`` applies: --tol first, else the registry's default (None: not gated)."""
    if name in tols:
        return tols[name].allowed(base)
    return METRICS.get(name).tolerance(base)


@dataclass
class Delta:
    """One metric of one point in both sets."""

    metric: str
    base: float | None
    current: float | None
    base_n: int = 0
    current_n: int = 0
    delta: float | None = None
    rel: float | None = None
    verdict: str = "same"  # better | worse | same | missing | new
    outside_noise: bool = False
    tolerance: float | None = None


@dataclass
class PointDiff:
    key: PointKey
    label: str
    base_status: str | None
    current_status: str | None
    deltas: list[Delta] = field(default_factory=list)
    task_metrics: tuple[str, ...] = ()  # primary first


def _delta(name: str, a: Agg | None, b: Agg | None, tols: dict[str, Tolerance]) -> Delta:
    m = METRICS.get(name)
    d = Delta(name, a.mean if a else None, b.mean if b else None, a.n if a else 0, b.n if b else 0)
    if a is None or b is None:
        d.verdict = "missing" if b is None else "new"
        return d
    d.delta = b.mean - a.mean
    d.rel = d.delta / abs(a.mean) if a.mean else None
    d.tolerance = default_tolerance(name, a.mean, tols)
    if a.n >= 2 and b.n >= 2:
        d.outside_noise = not a.overlaps(b)
    else:
        d.outside_noise = abs(d.delta) > (d.tolerance if d.tolerance is not None else m.noise(a.mean))
    if d.delta != 0:
        d.verdict = "better" if m.better(b.mean, a.mean) else "worse"
    return d


def compare_points(
    base: list[Point], current: list[Point], tols: dict[str, Tolerance] | None = None
) -> list[PointDiff]:
    """Every point of either set, matched by grid point, with a delta per registered metric."""
    tols = tols or {}
    bmap = {p.key: p for p in base}
    cmap = {p.key: p for p in current}
    keys = list(bmap) + [k for k in cmap if k not in bmap]
    diffs = []
    for key in keys:
        b, c = bmap.get(key), cmap.get(key)
        some = b or c
        assert some is not None
        tm = (c.task_metrics if c else ()) or (b.task_metrics if b else ())
        primary = (c.primary if c else None) or (b.primary if b else None)
        tm = ((primary,) if primary else ()) + tuple(m for m in tm if m != primary)
        pd_ = PointDiff(key, some.label, b.status if b else None, c.status if c else None, task_metrics=tm)
        names = [n for n in METRICS if (b and n in b.aggs) or (c and n in c.aggs)]
        for name in names:
            pd_.deltas.append(_delta(name, b.aggs.get(name) if b else None, c.aggs.get(name) if c else None, tols))
        diffs.append(pd_)
    return diffs


@dataclass
class CheckResult:
    regressions: list[str]
    improvements: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.regressions


def _fmt_change(d: Delta) -> str:
    m = METRICS.get(d.metric)
    rel = f", {d.rel:+.1%}" if d.rel is not None else ""
    tol = f"; tolerance {m.format(d.tolerance, ref=d.base)}" if d.tolerance is not None else ""
    assert d.delta is not None
    sign = "+" if d.delta >= 0 else "-"
    return (
        f"{d.metric} {m.format(d.base)} -> {m.format(d.current)} "
        f"({sign}{m.format(abs(d.delta), ref=d.base)}{rel}; {m.direction}{tol})"
    )


def recipe_warnings(base: list[Point], current: list[Point]) -> list[str]:
    """Matched points trained with different recipes (``lorabench.record.recipe_hash``): their deltas
    compare two training setups, not two code versions."""
    cur = {p.key: p for p in current}
    out = []
    for p in base:
        q = cur.get(p.key)
        if q is not None and p.recipes and q.recipes and p.recipes != q.recipes:
            out.append(
                f"{p.label}: trained with a different recipe (train/method/data settings; recipe "
                f"{', '.join(sorted(p.recipes))} vs {', '.join(sorted(q.recipes))}): its changes are not the code's alone"
            )
    return out


# Figures measured with a clock: on a busy host they are the machine's, not the method's.
TIMING = ("tokens_per_s", "samples_per_s", "step_ms", "train_s", "eval_s", "mfu")


def comparable(base: list[Point], current: list[Point]) -> None:
    """Exit 2 unless some grid point is in both sets: two disjoint sets have nothing to compare."""
    if not {p.key for p in base} & {p.key for p in current}:
        raise UsageError(
            "the two result sets share no grid point (task, model, method, rank, precision); nothing to compare"
        )


def check(base: list[Point], current: list[Point], tols: dict[str, Tolerance] | None = None) -> CheckResult:
    """Every regression beyond tolerance in the bad direction; missing and newly failing points count.

    A gate needs something to judge: exit 2 (``UsageError``) when the sets share no grid
    point or no shared point succeeded in the baseline.
    """
    tols = tols or {}
    comparable(base, current)
    ckeys = {p.key for p in current}
    if not any(p.n for p in base if p.key in ckeys):
        raise UsageError("no grid point in both sets succeeded in the baseline; there is nothing to gate against")
    res = CheckResult([], [], [])
    busy = {p.key: p for p in current if "busy_host" in p.flags}
    if busy:
        names = ", ".join(p.label for p in busy.values())
        res.notes.append(
            f"{len(busy)} current point(s) were timed on a busy host (flag busy_host): {names}; "
            f"a gate on {', '.join(TIMING)} is unreliable there"
        )
    res.notes += recipe_warnings(base, current)
    for pdiff in compare_points(base, current, tols):
        if pdiff.base_status is None:
            res.notes.append(f"{pdiff.label}: new point (not in the baseline)")
            continue
        if pdiff.current_status is None:
            res.regressions.append(f"{pdiff.label}: missing from the current results")
            continue
        if pdiff.base_status == "success" and pdiff.current_status != "success":
            res.regressions.append(f"{pdiff.label}: now {pdiff.current_status} (baseline: success)")
            continue
        if pdiff.base_status != "success" and pdiff.current_status == "success":
            res.improvements.append(f"{pdiff.label}: now success (baseline: {pdiff.base_status})")
        for d in pdiff.deltas:
            gated = d.metric in tols or METRICS.get(d.metric).tolerance(1.0) is not None
            if not gated:
                continue
            if d.verdict == "missing":
                res.regressions.append(f"{pdiff.label}: {d.metric} missing from the current results")
            elif d.delta is not None and d.tolerance is not None and abs(d.delta) > d.tolerance:
                line = f"{pdiff.label}: {_fmt_change(d)}"
                if pdiff.key in busy and d.metric in TIMING:
                    line += " [timed on a busy host: unreliable]"
                (res.regressions if d.verdict == "worse" else res.improvements).append(line)
    return res


# -- rendering ---------------------------------------------------------------------------

# Cost figures shown in the Markdown view (CSV and JSON carry every registered figure).
MD_COSTS = ("peak_mem_train_mb", "tokens_per_s", "step_ms", "adapter_bytes", "trainable_params")
_COLUMNS = ("point", "metric", "baseline", "current", "delta", "rel", "verdict", "outside_noise")


def _rows(diffs: list[PointDiff], short: bool = False) -> list[dict[str, Any]]:
    rows = []
    for pdiff in diffs:
        if pdiff.base_status != pdiff.current_status:
            rows.append(
                {
                    "point": pdiff.label,
                    "metric": "status",
                    "baseline": pdiff.base_status or "absent",
                    "current": pdiff.current_status or "absent",
                    "delta": "",
                    "rel": "",
                    "verdict": "worse" if pdiff.base_status == "success" else "better",
                    "outside_noise": True,
                }
            )
        for d in pdiff.deltas:
            m = METRICS.get(d.metric)
            if short and m.kind != "quality" and d.metric not in MD_COSTS:
                continue
            # Numbers as numbers (a CSV is read by programs): raw values, relative change as a fraction.
            rows.append(
                {
                    "point": pdiff.label,
                    "metric": d.metric,
                    "baseline": d.base,
                    "current": d.current,
                    "delta": d.delta,
                    "rel": d.rel,
                    "verdict": d.verdict,
                    "outside_noise": d.outside_noise,
                }
            )
    return rows


def render(diffs: list[PointDiff], fmt: str = "md") -> str:
    """The comparison as Markdown (a table per task), CSV or JSON (raw numbers)."""
    if fmt == "json":
        return json.dumps(
            [
                {
                    "point": dict(zip(("task", "model", "method", "rank", "precision"), p.key)),
                    "label": p.label,
                    "base_status": p.base_status,
                    "current_status": p.current_status,
                    "deltas": [asdict(d) for d in p.deltas],
                }
                for p in diffs
            ],
            indent=2,
        )
    rows = _rows(diffs)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(_COLUMNS))
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    out = []
    for task in sorted({p.key[0] for p in diffs}):
        pts = [p for p in diffs if p.key[0] == task]
        names: list[str] = []
        for p in pts:
            names += [
                d.metric
                for d in p.deltas
                if d.metric not in names and (METRICS.get(d.metric).kind == "quality" or d.metric in MD_COSTS)
            ]
        first = next((p.task_metrics for p in pts if p.task_metrics), ())
        names = [n for n in first if n in names] + [n for n in names if n not in first]
        names = sorted(names, key=lambda n: METRICS.get(n).kind != "quality")  # stable: quality first
        table = []
        for p in pts:
            row = {"point": md_cell(p.label), "status": md_cell(_status_cell(p))}
            by_name = {d.metric: d for d in p.deltas}
            for n in names:
                row[METRICS.get(n).header] = _cell(by_name[n]) if n in by_name else ""
            table.append(row)
        out += [
            f"## {md_text(task)}",
            "",
            tabulate(table, headers="keys", tablefmt="github", disable_numparse=True),
            "",
        ]
    out.append(
        "Each cell: baseline → current (change); an unchanged value is shown once. ▲! better, ▼! worse (in each "
        "metric's registered direction) and outside the noise: beyond the metric's tolerance, or with >= 2 seeds "
        "on both sides, 95% intervals that do not overlap. A change without a mark is inside the noise."
    )
    return "\n".join(out) + "\n"


def _status_cell(p: PointDiff) -> str:
    if p.base_status == p.current_status:
        return p.current_status or ""
    return f"{p.base_status or 'absent'} → {p.current_status or 'absent'}"


def _cell(d: Delta) -> str:
    """``base → current (change mark)``; an unchanged value (as shown) is the value alone, and a
    change inside the noise carries no arrow: only what is outside the noise is marked."""
    m = METRICS.get(d.metric)
    if d.delta is None:
        return f"{m.format(d.base)} → {m.format(d.current)}"
    if d.delta == 0 or m.format(d.base) == m.format(d.current):
        return m.format(d.current)
    change = f"{d.rel:+.1%}" if d.rel is not None else f"{'+' if d.delta > 0 else '-'}{m.format(abs(d.delta), d.base)}"
    if not d.outside_noise:
        return f"{m.format(d.base)} → {m.format(d.current)} ({change})"
    return f"{m.format(d.base)} → {m.format(d.current)} ({change} {'▲' if d.verdict == 'better' else '▼'}!)"


def compare_sets(
    base_runs: list[Any], current_runs: list[Any], tols: dict[str, Tolerance] | None = None
) -> list[PointDiff]:
    return compare_points(group(base_runs), group(current_runs), tols)
