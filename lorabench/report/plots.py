"""Plots that answer the benchmark's questions (seaborn, PNG), each with a "how to read this".

- memory vs quality per task, with the Pareto front (differences inside the noise ignored);
- quality and memory vs rank per method and precision, only where a rank sweep exists;
- throughput per method and precision, with the per-step spread;
- trainable share (log axis) vs quality per task;
- training loss and periodic eval curves, one line per grid point (its seeds' mean and range; a
  sweep's selected rate), with colours and line styles that keep 13+ series apart.

Directions and axis names come from the metric registry. Labels are placed by a small
deterministic scheme that tries offsets around each point until none overlap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lorabench.metrics import METRICS, record_values
from lorabench.record_data import Record
from lorabench.report.leaderboard import inside_noise
from lorabench.report.results import group, point_label, run_from_record
from lorabench.report.select import select

MEM = "peak_mem_train_mb"
LINESTYLES = ("-", "--", ":", "-.")
DID_NOT_LEARN = "did_not_learn"
# Series at the same rank are spread this far apart on the log-2 rank axis (a share of
# one doubling), so their error bars do not hide each other.
DODGE = 0.06


@dataclass(frozen=True)
class Plot:
    path: Path
    title: str
    how: str  # "how to read this", shown under the plot in the report


def _setup() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")


def _label(row: pd.Series) -> str:
    rank = "" if pd.isna(row["rank"]) else f"-r{int(row['rank'])}"
    return f"{row['method']}{rank}@{row['precision']}"


def series_styles(n: int) -> list[tuple[Any, str]]:
    """(colour, linestyle) for ``n`` series: 10 distinct colours x 4 styles, so 40 series stay apart."""
    import seaborn as sns

    colours = sns.color_palette("tab10", 10)
    return [(colours[i % 10], LINESTYLES[(i // 10) % len(LINESTYLES)]) for i in range(n)]


def place_labels(ax: Any, xs: list[float], ys: list[float], labels: list[str], fontsize: float = 7.5) -> None:
    """Annotate points so that no two labels overlap each other or a marker (greedy, deterministic).

    Candidate offsets ring each point at growing distances; the first free one wins,
    checked in display space with the rendered text size. A label placed away from its
    point gets a thin leader line.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_disp = ax.transData.transform
    axbox = ax.get_window_extent()
    pts = [tuple(to_disp((x, y))) for x, y in zip(xs, ys)]
    px_per_pt = fig.dpi / 72.0
    marker = 10 * px_per_pt  # covers the Pareto ring as well as the marker
    taken = [(px - marker, py - marker, px + marker, py + marker) for px, py in pts]

    def free(box: tuple[float, float, float, float]) -> bool:
        x0, y0, x1, y1 = box
        if x0 < axbox.x0 or x1 > axbox.x1 or y0 < axbox.y0 or y1 > axbox.y1:
            return False
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in taken)

    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], pts[i][1]))
    for i in order:
        px, py = pts[i]
        t = ax.text(0, 0, labels[i], fontsize=fontsize)
        bb = t.get_window_extent(renderer)
        t.remove()
        w, h = bb.width + 2, bb.height + 2
        chosen = None
        for dist in (3, 8, 14, 22, 32, 45, 60):
            d = dist * px_per_pt
            for dx, dy in (
                (d, -h / 2),  # right
                (-d - w, -h / 2),  # left
                (d * 0.7, d * 0.7),  # up right
                (d * 0.7, -d * 0.7 - h),  # down right
                (-d * 0.7 - w, d * 0.7),  # up left
                (-d * 0.7 - w, -d * 0.7 - h),  # down left
                (-w / 2, d),  # above
                (-w / 2, -d - h),  # below
            ):
                box = (px + dx, py + dy, px + dx + w, py + dy + h)
                if free(box):
                    chosen = (dx, dy, box, dist)
                    break
            if chosen:
                break
        if chosen is None:
            d = 4 * px_per_pt
            chosen = (d, d / 2, (px + d, py + d / 2, px + d + w, py + d / 2 + h), 4)
        dx, dy, box, dist = chosen
        taken.append(box)
        ax.annotate(
            labels[i],
            (xs[i], ys[i]),
            xytext=(dx / px_per_pt, dy / px_per_pt),
            textcoords="offset points",
            fontsize=fontsize,
            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 0} if dist > 10 else None,
        )


def _slug(name: Any) -> str:
    """A task name as part of a file name: a name from a record could hold ``/`` or worse."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(name))[:100].lstrip(".") or "_"


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _plain_log_labels(axis: Any) -> None:
    """Log-axis labels as plain numbers (0.5, 2, 30), not 2×10⁰; minor ticks labelled only on short spans."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        # LogFormatter decides which ticks get a label; the label itself is the plain number.
        def __call__(self, x: float, pos: Any = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _run_order(rec: Record) -> tuple[Any, ...]:
    """Legend order: model, method, rank as a number (r4 before r16), precision, seed."""
    spec = rec.spec
    rank = spec.get("rank")
    return (
        spec["model"]["name"],
        spec["method"],
        -1 if rank is None else rank,
        spec["precision"],
        spec.get("seed") or 0,
    )


def band_err(grp: pd.DataFrame, metric: str) -> Any | None:
    """Asymmetric error bars (below, above the mean) from the leaderboard's band columns.

    The band is the table's (:meth:`lorabench.stats.Agg.band`): the 95% t interval from 3
    seeds, the observed min-max with 2, nothing with 1; None when no point has one.
    """
    lo, hi, mean = f"{metric}_lo", f"{metric}_hi", f"{metric}_mean"
    if lo not in grp or hi not in grp or grp[lo].isna().all():
        return None
    below = (grp[mean] - grp[lo]).fillna(0).clip(lower=0).to_numpy()
    above = (grp[hi] - grp[mean]).fillna(0).clip(lower=0).to_numpy()
    return [below, above]


def did_not_learn(grp: pd.DataFrame) -> pd.Series:
    """Rows whose point carries the did_not_learn flag (any seed), as the leaderboard's DNL marker."""
    flags = grp["flags"] if "flags" in grp else pd.Series("", index=grp.index)
    return flags.fillna("").astype(str).str.split(";").apply(lambda fs: DID_NOT_LEARN in fs)


def _scatter_by_method(ax: Any, grp: pd.DataFrame, x: str, y: str, metric: str | None = None) -> None:
    """One marker per point: colour = method, marker = precision, a red x where it did not learn;
    error bars are the table's band of ``metric``; legend outside the axes."""
    import seaborn as sns

    sns.scatterplot(data=grp, x=x, y=y, hue="method", style="precision", s=70, ax=ax, zorder=3)
    err = band_err(grp, metric) if metric else None
    if err is not None:
        ax.errorbar(grp[x], grp[y], yerr=err, fmt="none", ecolor="0.5", lw=0.8, zorder=2)
    dnl = grp[did_not_learn(grp)]
    if len(dnl):
        ax.scatter(dnl[x], dnl[y], marker="x", s=120, color="crimson", lw=1.8, zorder=5, label="did not learn")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)


def dodge(n: int) -> list[float]:
    """Multiplicative x offsets for ``n`` series on a log-2 axis, centred on the true value."""
    return [2 ** (DODGE * (i - (n - 1) / 2)) for i in range(n)]


def memory_vs_quality(num: pd.DataFrame, out: Path) -> list[Plot]:
    import matplotlib.pyplot as plt

    plots = []
    for task, grp in num.groupby("task", sort=True):
        metric = grp["primary_metric"].dropna().iloc[0] if grp["primary_metric"].notna().any() else None
        col, mcol = f"{metric}_mean", f"{MEM}_mean"
        if not metric or col not in grp or mcol not in grp:
            continue
        grp = grp.dropna(subset=[col, mcol])
        if len(grp) < 2:
            continue  # one point answers no trade-off question
        m = METRICS.get(metric)
        grp = grp.assign(point=grp.apply(_label, axis=1))
        fig, ax = plt.subplots(figsize=(8, 5))
        _scatter_by_method(ax, grp, mcol, col, metric)
        front = grp[grp["pareto"].astype(bool)].sort_values(mcol)
        if len(front):
            ax.scatter(front[mcol], front[col], s=220, facecolors="none", edgecolors="black", lw=1.2, zorder=4)
        if len(front) > 1:
            ax.plot(front[mcol], front[col], color="0.3", lw=1, ls="--", zorder=1)
        src = grp["mem_source"].dropna().iloc[0] if grp["mem_source"].notna().any() else "?"
        note = "  (all memory differences inside the noise)" if inside_noise(list(grp[mcol]), MEM) else ""
        ax.set(
            xlabel=f"peak train memory, MiB ({src}){note}",
            ylabel=f"{metric} ({m.direction})",
            title=f"{task}: memory vs {metric}",
        )
        place_labels(ax, list(grp[mcol]), list(grp[col]), list(grp["point"]))
        plots.append(
            Plot(
                _save(fig, out / f"memory_vs_{metric}_{_slug(task)}.png"),
                f"{task}: memory vs {metric}",
                f"Each point is a grid point (method, rank, precision). Circled points form the Pareto front: no other "
                f"point uses less memory and scores better beyond the noise ({metric}'s tolerance and "
                f"{METRICS.get(MEM).noise_rel:.0%} memory, and with >= 2 seeds bands that do not overlap). Error bars "
                f"are the table's band (95% t interval from 3 seeds, min-max with 2); a red x marks a point that did "
                f"not learn. {m.direction.capitalize()}; further left is cheaper. Memory is {src}"
                + (
                    " (host RSS on CPU: dominated by the imported libraries at tiny model sizes)."
                    if src == "rss"
                    else "."
                ),
            )
        )
    return plots


def rank_sweep(num: pd.DataFrame, out: Path) -> list[Plot]:
    """Quality and memory vs rank, one line per method@precision that was run at >= 2 ranks."""
    import matplotlib.pyplot as plt

    plots = []
    ranked = num.dropna(subset=["rank"])
    for task, grp in ranked.groupby("task", sort=True):
        metric = grp["primary_metric"].dropna().iloc[0] if grp["primary_metric"].notna().any() else None
        col = f"{metric}_mean"
        if not metric or col not in grp:
            continue
        grp = grp.dropna(subset=[col]).assign(series=lambda g: g["method"] + "@" + g["precision"])
        swept = [s for s, g in grp.groupby("series") if g["rank"].nunique() >= 2]
        if not swept:
            continue
        grp = grp[grp["series"].isin(swept)]
        has_mem = f"{MEM}_mean" in grp and grp[f"{MEM}_mean"].notna().any()
        fig, axes = plt.subplots(1, 2 if has_mem else 1, figsize=(12 if has_mem else 7, 4.2), squeeze=False)
        styles = series_styles(len(swept))
        m = METRICS.get(metric)
        for (colour, ls), series, shift in zip(styles, swept, dodge(len(swept))):
            g = grp[grp["series"] == series].sort_values("rank")
            r = g["rank"].astype(int) * shift  # dodged: bars of two methods at one rank stay apart
            axes[0][0].errorbar(r, g[col], yerr=band_err(g, metric), color=colour, ls=ls, marker="o", label=series)
            dnl = g[did_not_learn(g)]
            if len(dnl):
                axes[0][0].scatter(
                    dnl["rank"].astype(int) * shift, dnl[col], marker="x", s=120, color="crimson", lw=1.8, zorder=5
                )
            if has_mem:
                axes[0][1].errorbar(
                    r, g[f"{MEM}_mean"], yerr=band_err(g, MEM), color=colour, ls=ls, marker="o", label=series
                )
        for ax in axes[0]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(grp["rank"].astype(int).unique()))
            ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{int(v)}"))
            ax.set_xlabel("rank")
        axes[0][0].set(ylabel=f"{metric} ({m.direction})", title=f"{task}: {metric} vs rank")
        mem_note = has_mem and inside_noise(list(grp[f"{MEM}_mean"]), MEM)
        if has_mem:
            src = grp["mem_source"].dropna().iloc[0] if grp["mem_source"].notna().any() else "?"
            axes[0][1].set(ylabel=f"peak train MiB ({src})", title=f"{task}: memory vs rank")
            if mem_note:
                axes[0][1].text(
                    0.5,
                    0.02,
                    f"all differences inside the noise ({METRICS.get(MEM).noise_rel:.0%} of {src})",
                    transform=axes[0][1].transAxes,
                    ha="center",
                    va="bottom",
                    fontsize=8.5,
                    color="0.25",
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
                )
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        plots.append(
            Plot(
                _save(fig, out / f"rank_sweep_{_slug(task)}.png"),
                f"{task}: rank sweep",
                f"One line per method and precision run at two or more ranks (log-2 axis; lines are nudged sideways "
                f"around each rank so their error bars do not hide each other). Error bars are the table's band "
                f"(95% t interval from 3 seeds, min-max with 2); a red x marks a point that did not learn. "
                f"Left: {metric} ({m.direction}); right: peak memory"
                + (", all of it inside the noise here" if mem_note else "")
                + ". A flat quality line means the extra rank buys nothing.",
            )
        )
    return plots


def _throughput_label(spec: dict[str, Any], task_too: bool) -> str:
    method = spec["method"] if spec["rank"] is None else f"{spec['method']}-r{spec['rank']}"
    label = f"{spec['model']['name']} {method}@{spec['precision']}"
    return f"{spec['task']}: {label}" if task_too else label


def throughput(records: list[Record], out: Path, num: pd.DataFrame | None = None) -> list[Plot]:
    """Per-step tokens/s of each point (box: the spread over timed steps and seeds), with the
    leaderboard's figure for the point drawn on it (a diamond), so plot and table agree."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = [r for r in records if r.status == "success" and r.profile.step_s and r.profile.timed_tokens]
    labels = {}
    for r in ok:
        labels.setdefault(_throughput_label(r.spec, False), set()).add(r.spec["task"])
    task_too = any(len(tasks) > 1 for tasks in labels.values())  # one box per leaderboard row
    rows, keys = [], {}
    for r in ok:
        prof, spec = r.profile, r.spec
        if not prof.timed_steps or "tokens_per_s" not in record_values(r):
            continue
        label = _throughput_label(spec, task_too)
        keys[label] = (spec["task"], spec["model"]["name"], spec["method"], spec["rank"], spec["precision"])
        per_step = prof.timed_tokens / prof.timed_steps  # the tokens of median_tokens_per_s, per step
        rows += [{"point": label, "precision": spec["precision"], "tok_s": per_step / s} for s in prof.step_s if s > 0]
    if not rows:
        return []
    df = pd.DataFrame(rows)
    tps = METRICS.get("tokens_per_s")
    table: dict[str, float] = {}
    if num is not None and "tokens_per_s_mean" in num:
        for label, (task, model, method, rank, precision) in keys.items():
            hit = num[
                (num["task"] == task)
                & (num["model"] == model)
                & (num["method"] == method)
                & (num["rank"].isna() if rank is None else num["rank"] == rank)
                & (num["precision"] == precision)
            ]
            if len(hit) and pd.notna(hit["tokens_per_s_mean"].iloc[0]):
                table[label] = float(hit["tokens_per_s_mean"].iloc[0])
    medians = df.groupby("point")["tok_s"].median().to_dict()
    figure = {k: table.get(k, v) for k, v in medians.items()}
    order = [k for k, _ in sorted(figure.items(), key=lambda kv: tps.sort_key(kv[1]))]  # best first
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.6))
    sns.boxplot(data=df, y="point", x="tok_s", hue="precision", order=order, dodge=False, showfliers=False, ax=ax)
    if table:
        ys = [i for i, k in enumerate(order) if k in table]
        ax.scatter([table[order[i]] for i in ys], ys, marker="D", s=28, color="black", zorder=5, label="leaderboard")
    ax.set(xlabel=f"train tokens/s per step (warm-up excluded; {tps.direction})", ylabel="", title="throughput")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return [
        Plot(
            _save(fig, out / "throughput.png"),
            "throughput per method and precision",
            "Each box is one grid point's timed steps over its seeds: the middle half of the steps (box), the range "
            "without outliers (whiskers) and their median (line). The black diamond is the leaderboard's tokens/s "
            "(each seed's median step, averaged over seeds); points are sorted by it, best first. A wide box means "
            "the machine's load moved the timing; compare only where boxes are narrow.",
        )
    ]


def trainable_vs_quality(num: pd.DataFrame, out: Path) -> list[Plot]:
    import matplotlib.pyplot as plt

    plots = []
    for task, grp in num.groupby("task", sort=True):
        metric = grp["primary_metric"].dropna().iloc[0] if grp["primary_metric"].notna().any() else None
        col = f"{metric}_mean"
        if not metric or col not in grp or "trainable_pct_mean" not in grp:
            continue
        grp = grp.dropna(subset=[col, "trainable_pct_mean"])
        if len(grp) < 2:
            continue  # one point answers no trade-off question
        m = METRICS.get(metric)
        grp = grp.assign(point=grp.apply(_label, axis=1))
        fig, ax = plt.subplots(figsize=(8, 5))
        _scatter_by_method(ax, grp, "trainable_pct_mean", col, metric)
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis)
        ax.set(
            xlabel="trainable parameters, % of all (log)",
            ylabel=f"{metric} ({m.direction})",
            title=f"{task}: {metric} vs trainable share",
        )
        place_labels(ax, list(grp["trainable_pct_mean"]), list(grp[col]), list(grp["point"]))
        plots.append(
            Plot(
                _save(fig, out / f"trainable_vs_{metric}_{_slug(task)}.png"),
                f"{task}: trainable share vs {metric}",
                f"Quality bought per trained parameter: further left trains fewer parameters; {m.direction}. "
                "The axis is logarithmic, so each step left is ten times fewer trainable parameters. A red x marks "
                "a point that did not learn.",
            )
        )
    return plots


@dataclass(frozen=True)
class CurveSeries:
    """One line of a curve plot: a leaderboard point (a swept point at its selected rate) over its seeds."""

    label: str
    runs: list[Record]


def curve_series(records: list[Record], select_metric: str | None = None) -> list[CurveSeries]:
    """The successful runs as the leaderboard groups them, one series per point, in legend order.

    Seeds of a point share a line (their mean), and a learning-rate sweep shows the rate
    ``select`` chose (lorabench.report.select): 45 runs of 5 methods x 3 rates x 3 seeds are
    5 lines, not 45 that no legend can tell apart.
    """
    ok = sorted((r for r in records if r.ok), key=_run_order)
    by_id = {r.run_id: r for r in ok}
    points = group([run_from_record(r) for r in ok])
    if select_metric is not None:
        points, _ = select(points, select_metric)
    out = []
    for p in points:
        runs = [by_id[r.run_id] for r in p.runs if r.run_id in by_id]
        if not runs:
            continue
        seeds = f", {len(runs)} seeds" if len(runs) > 1 else ""
        out.append(CurveSeries(point_label(p.key) + seeds, runs))
    return out


def mean_curve(curves: list[list[tuple[float, float | None, float | None]]]) -> tuple[list[float], ...]:
    """(x, mean, low, high) over seeds at each step any seed logged: ``curves`` hold (step, value, x) rows.

    ``x`` is the step itself where None (a loss or eval curve by step), else the cost axis
    (tokens, seconds), averaged like the value. The band is the seeds' min-max.
    """
    at: dict[float, list[tuple[float, float]]] = {}
    for curve in curves:
        for step, value, x in curve:
            if isinstance(value, (int, float)) and math.isfinite(value):
                at.setdefault(step, []).append((step if x is None else x, value))
    xs, mean, lo, hi = [], [], [], []
    for step in sorted(at):
        pts = at[step]
        vals = [v for _, v in pts]
        xs.append(sum(x for x, _ in pts) / len(pts))
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, mean, lo, hi


def _draw(
    ax: Any, curves: list[list[tuple[float, float | None, float | None]]], style: tuple[Any, str], **kw: Any
) -> None:
    xs, mean, lo, hi = mean_curve(curves)
    colour, ls = style
    ax.plot(xs, mean, lw=1.3, color=colour, ls=ls, **kw)
    if len(curves) > 1:
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, lw=0)


def learning_curves(records: list[Record], out: Path, select_metric: str | None = None) -> list[Plot]:
    """Per task: train loss per step, and the primary metric per step where runs set `eval.every`."""
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.ok and r.curves.get("train_loss")]
    plots = []
    for task in sorted({r.spec["task"] for r in ok}):
        series = curve_series([r for r in ok if r.spec["task"] == task], select_metric)
        runs = [r for s in series for r in s.runs]
        metric = run_from_record(runs[0]).primary
        with_eval = {r.run_id for r in runs if r.curves.get("eval") and metric in r.curves["eval"][0]}
        fig, axes = plt.subplots(1, 2 if with_eval else 1, figsize=(13 if with_eval else 8, 4.5), squeeze=False)
        for s, style in zip(series, series_styles(len(series))):
            _draw(
                axes[0][0], [[(c[0], c[1], None) for c in r.curves["train_loss"]] for r in s.runs], style, label=s.label
            )
            evals = [
                [(p["step"], p.get(metric), None) for p in r.curves["eval"]] for r in s.runs if r.run_id in with_eval
            ]
            if evals:
                _draw(axes[0][1], evals, style, marker="o", ms=3)
        axes[0][0].set(xlabel="optimizer step", ylabel="train loss", title=f"{task}: training loss")
        # Which split the curves were measured on (`resolved.splits`): validation where the task has one.
        on = {(r.resolved.get("splits") or {}).get("curves.eval", "test") for r in runs if r.run_id in with_eval}
        split = "/".join(sorted(on)) if on else "test"
        if with_eval and metric:
            m = METRICS.get(metric)
            axes[0][1].set(
                xlabel="optimizer step",
                ylabel=f"{split} {metric} ({m.direction})",
                title=f"{task}: {metric} on the {split} split",
            )
        axes[0][-1].legend(
            *axes[0][0].get_legend_handles_labels(),
            fontsize=7.5,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
        )
        fig.set_figheight(max(4.5, 0.22 * len(series) + 1.0))
        fig.tight_layout()
        seeds = any(len(s.runs) > 1 for s in series)
        plots.append(
            Plot(
                _save(fig, out / f"curves_{_slug(task)}.png"),
                f"{task}: learning curves",
                "Training loss per optimizer step, one line per grid point (colour and line style together identify "
                "it; the legend lists them)"
                + (": the mean over its seeds, shaded between the lowest and highest seed" if seeds else "")
                + ("; a learning-rate sweep shows its selected rate" if select_metric else "")
                + (f". Right: {metric} on the {split} split every `eval.every` steps." if with_eval else ".")
                + " A curve that stays flat did not learn; compare where curves end, not where they start.",
            )
        )
    return plots


def time_to_quality(records: list[Record], out: Path, select_metric: str | None = None) -> list[Plot]:
    """Per task: the eval curve against training tokens and seconds, one line per grid point, the target dotted.

    Reads the cost each curve point recorded (``train_tokens``, ``train_s``) and the
    target ``profile.time_to_target`` names (set by lorabench.report.target).
    """
    import matplotlib.pyplot as plt

    def curve(r: Record) -> list[dict[str, Any]]:
        return r.curves.get("eval") or []

    ok = [r for r in records if r.ok and curve(r) and "train_tokens" in curve(r)[0]]
    plots = []
    for task in sorted({r.spec["task"] for r in ok}):
        metric = run_from_record(next(r for r in ok if r.spec["task"] == task)).primary
        runs = [r for r in ok if r.spec["task"] == task and metric and metric in curve(r)[0]]
        series = curve_series(runs, select_metric)
        if not series:
            continue
        target = next((r.profile.time_to_target for r in runs if r.profile.time_to_target), None)
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), squeeze=False)
        for col, (key, label) in enumerate((("train_tokens", "training tokens"), ("train_s", "training seconds"))):
            ax = axes[0][col]
            for s, style in zip(series, series_styles(len(series))):
                curves = [
                    [(p["step"], p.get(metric), p.get(key)) for p in curve(r) if p.get(key) is not None] for r in s.runs
                ]
                _draw(ax, curves, style, marker="o", ms=3, label=s.label)
            if target and target.get("metric") == metric:
                ax.axhline(target["target"], color="0.5", ls=":", lw=1)
            ax.set(
                xlabel=f"{label} (warm-up included, eval excluded)",
                ylabel=f"{metric} ({METRICS.get(metric).direction})",
            )
        axes[0][0].set_title(f"{task}: quality against training cost")
        axes[0][-1].legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.set_figheight(max(4.5, 0.22 * len(series) + 1.0))
        fig.tight_layout()
        rule = f" Dotted: the target, {metric} {target['target']:.4g} ({target['rule']})." if target else ""
        seeds = any(len(s.runs) > 1 for s in series)
        plots.append(
            Plot(
                _save(fig, out / f"time_to_quality_{_slug(task)}.png"),
                f"{task}: time to quality",
                f"The periodic-evaluation {metric} of each grid point against the training tokens (left) and "
                f"seconds (right) spent to reach it"
                + (" (the mean over its seeds, shaded between the lowest and highest seed)" if seeds else "")
                + ("; a learning-rate sweep shows its selected rate" if select_metric else "")
                + f".{rule} Where a line first crosses the target is its time to target.",
            )
        )
    return plots


def make_plots(
    num: pd.DataFrame, out: Path, records: list[Record] | None = None, select_metric: str | None = None
) -> list[Plot]:
    """Every plot the data supports (an empty series is never drawn)."""
    if num.empty:
        return []
    _setup()
    out.mkdir(parents=True, exist_ok=True)  # a fresh staging directory: see lorabench.report.build
    records = records or []
    return [
        *memory_vs_quality(num, out),
        *trainable_vs_quality(num, out),
        *rank_sweep(num, out),
        *throughput(records, out, num),
        *learning_curves(records, out, select_metric),
        *time_to_quality(records, out, select_metric),
    ]
