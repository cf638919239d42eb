"""Trade-off plots (seaborn): memory vs quality with the Pareto front, rank sweeps, throughput."""

from __future__ import annotations

import math
from pathlib import Path

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


def make_plots(num: pd.DataFrame, out: Path) -> list[Path]:
    if num.empty:
        return []
    _setup()
    out.mkdir(parents=True, exist_ok=True)
    return [*memory_vs_quality(num, out), *rank_sweep(num, out), *throughput(num, out)]
