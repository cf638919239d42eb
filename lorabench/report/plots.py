"""Trade-off plots (seaborn): memory vs quality with the Pareto front, rank sweeps, throughput,
and learning curves (train loss, and the primary metric where runs evaluated periodically)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lorabench.metrics import METRICS


def _setup() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")


def pareto(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """Points not dominated in (lower memory, better metric), sorted by memory."""
    front: list[tuple[float, float]] = []
    best = -math.inf if higher_is_better else math.inf
    for mem, val in sorted(points):
        if (val > best) if higher_is_better else (val < best):
            front.append((mem, val))
            best = val
    return front


def _label(row: pd.Series) -> str:
    rank = "" if pd.isna(row["rank"]) else f"-r{int(row['rank'])}"
    return f"{row['method']}{rank}@{row['precision']}"


def memory_vs_quality(num: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    paths = []
    for task, grp in num.groupby("task"):
        metric = grp["primary_metric"].iloc[0]
        col = f"{metric}_mean"
        if not metric or col not in grp:
            continue
        grp = grp.dropna(subset=[col, "peak_mem_train_mb_mean"])
        if grp.empty:
            continue
        grp = grp.assign(point=grp.apply(_label, axis=1))
        fig, ax = plt.subplots(figsize=(7, 4.5))
        sns.scatterplot(data=grp, x="peak_mem_train_mb_mean", y=col, hue="method", style="precision", s=90, ax=ax)
        front = pareto(list(zip(grp["peak_mem_train_mb_mean"], grp[col])), METRICS.get(metric).higher_is_better)
        if len(front) > 1:
            ax.plot(*zip(*front), color="0.4", lw=1, ls="--", label="Pareto front")
        for _, r in grp.iterrows():
            ax.annotate(
                r["point"], (r["peak_mem_train_mb_mean"], r[col]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        src = grp["mem_source"].dropna().iloc[0] if grp["mem_source"].notna().any() else "?"
        arrow = "higher is better" if METRICS.get(metric).higher_is_better else "lower is better"
        ax.set(
            xlabel=f"peak train memory (MiB, {src})", ylabel=f"{metric} ({arrow})", title=f"{task}: memory vs {metric}"
        )
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out / f"memory_vs_{metric}_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def rank_sweep(num: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    paths = []
    ranked = num.dropna(subset=["rank"])
    for task, grp in ranked.groupby("task"):
        if grp["rank"].nunique() < 2:
            continue
        metric = grp["primary_metric"].iloc[0]
        if f"{metric}_mean" not in grp:
            continue
        grp = grp.assign(series=grp["method"] + "@" + grp["precision"], rank=grp["rank"].astype(int))
        fig, ax = plt.subplots(figsize=(6.5, 4))
        sns.lineplot(data=grp, x="rank", y=f"{metric}_mean", hue="series", marker="o", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set(title=f"{task}: rank sweep", ylabel=metric)
        fig.tight_layout()
        path = out / f"rank_sweep_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def throughput(num: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    if "tokens_per_s_mean" not in num:
        return []
    grp = num.dropna(subset=["tokens_per_s_mean"])
    if grp.empty:
        return []
    grp = grp.assign(point=grp.apply(_label, axis=1) + " " + grp["task"])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(grp) + 1.5))
    sns.barplot(data=grp, y="point", x="tokens_per_s_mean", hue="method", dodge=False, ax=ax)
    ax.set(xlabel="train tokens/s (warm-up excluded)", ylabel="", title="throughput")
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _curve_label(rec: dict[str, Any], seeds: int) -> str:
    spec = rec["spec"]
    method = spec["method"] if spec["rank"] is None else f"{spec['method']}-r{spec['rank']}"
    seed = f" s{spec['seed']}" if seeds > 1 else ""
    return f"{spec['model']['name']} {method}@{spec['precision']}{seed}"


def learning_curves(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per task: train loss per step, and the primary metric per step where runs set `eval.every`."""
    import matplotlib.pyplot as plt

    from lorabench.report.leaderboard import primary_metric

    ok = [r for r in records if r["status"] == "success" and (r.get("curves") or {}).get("train_loss")]
    paths = []
    for task in sorted({r["spec"]["task"] for r in ok}):
        runs = [r for r in ok if r["spec"]["task"] == task]
        metric = primary_metric(runs[0])
        with_eval = [r for r in runs if r["curves"].get("eval") and metric in r["curves"]["eval"][0]]
        seeds = len({r["spec"]["seed"] for r in runs})
        fig, axes = plt.subplots(1, 2 if with_eval else 1, figsize=(12 if with_eval else 6.5, 4), squeeze=False)
        for r in runs:
            steps, losses = zip(*[(c[0], c[1]) for c in r["curves"]["train_loss"]])
            axes[0][0].plot(steps, losses, label=_curve_label(r, seeds), lw=1.2)
        axes[0][0].set(xlabel="optimizer step", ylabel="train loss", title=f"{task}: training loss")
        axes[0][0].legend(fontsize=7)
        if with_eval:
            arrow = "higher is better" if METRICS.get(metric).higher_is_better else "lower is better"
            for r in with_eval:
                pts = r["curves"]["eval"]
                axes[0][1].plot(
                    [p["step"] for p in pts],
                    [p[metric] for p in pts],
                    marker="o",
                    ms=3,
                    lw=1.2,
                    label=_curve_label(r, seeds),
                )
            axes[0][1].set(xlabel="optimizer step", ylabel=f"eval {metric} ({arrow})", title=f"{task}: eval {metric}")
            axes[0][1].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"curves_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def make_plots(num: pd.DataFrame, out: Path, records: list[dict[str, Any]] | None = None) -> list[Path]:
    if num.empty:
        return []
    _setup()
    out.mkdir(parents=True, exist_ok=True)
    curves = learning_curves(records, out) if records else []
    return [*memory_vs_quality(num, out), *rank_sweep(num, out), *throughput(num, out), *curves]
