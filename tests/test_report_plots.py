"""Static PNG plots: every figure they draw is the leaderboard's (one function derives each),
error bars that would coincide are dodged, memory inside the noise says so, and points that
did not learn are marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorabench.report.results import Run, group

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def _runs(method: str, rank: int, ppl: float, mem: float, flags: tuple[str, ...] = ()) -> list[Run]:
    return [
        Run(
            f"{method}{rank}s{s}",
            ("synthetic-lm", "tiny-gpt2", method, rank, "fp32"),
            s,
            "success",
            {"perplexity": ppl * (1 + 0.03 * s), "peak_mem_train_mb": mem + s, "tokens_per_s": 1000.0 + 100 * s},
            "perplexity",
            ("perplexity",),
            flags=flags,
            mem_source="rss",
        )
        for s in range(2)
    ]


@pytest.fixture
def sweep() -> Any:
    """LoRA and DoRA at ranks 4 and 8, 2 seeds each, memory 534-539 MiB; DoRA r8 did not learn."""
    from lorabench.report.leaderboard import numeric_frame

    runs = _runs("lora", 4, 6.0, 534) + _runs("lora", 8, 5.5, 535) + _runs("dora", 4, 6.1, 536)
    runs += _runs("dora", 8, 9.0, 538, flags=("did_not_learn",))
    return numeric_frame(group(runs))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The figures the plot functions save, kept open to read back what they drew."""
    from lorabench.report import plots

    kept: dict[str, Any] = {}

    def keep(fig: Any, path: Path) -> Path:
        kept[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    plots._setup()
    yield kept
    import matplotlib.pyplot as plt

    plt.close("all")


def test_error_bars_are_the_tables_min_max_band(sweep: Any) -> None:
    from lorabench.report.plots import band_err

    below, above = band_err(sweep, "perplexity")
    for i, (_, row) in enumerate(sweep.iterrows()):
        seeds = [row["perplexity_mean"] / 1.015, row["perplexity_mean"] / 1.015 * 1.03]  # the two seeds' values
        assert row["perplexity_mean"] - below[i] == pytest.approx(min(seeds))
        assert row["perplexity_mean"] + above[i] == pytest.approx(max(seeds))


def test_rank_sweep_dodges_bars_notes_noise_and_marks_did_not_learn(sweep: Any, figures: dict[str, Any]) -> None:
    from lorabench.report.plots import rank_sweep

    (plot,) = rank_sweep(sweep, Path("/nonexistent"))
    fig = figures[plot.path.name]
    quality, memory = fig.axes[:2]
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in quality.containers}  # one errorbar per series
    assert set(xs) == {"lora@fp32", "dora@fp32"}
    assert xs["lora@fp32"][0] != xs["dora@fp32"][0]  # dodged apart at rank 4 ...
    assert xs["lora@fp32"][0] * xs["dora@fp32"][0] == pytest.approx(16)  # ... around rank 4 (log axis)
    assert any("inside the noise" in t.get_text() for t in memory.texts)
    assert "inside the noise" in plot.how
    from matplotlib.collections import PathCollection

    # Lines and bars are Line2D/LineCollection; the only scattered markers are the did-not-learn x's.
    marks = [tuple(o) for c in quality.collections if isinstance(c, PathCollection) for o in c.get_offsets()]
    assert len(marks) == 1
    row = sweep[(sweep["method"] == "dora") & (sweep["rank"] == 8)].iloc[0]
    assert (pytest.approx(xs["dora@fp32"][1]), pytest.approx(row["perplexity_mean"])) in marks


def test_pareto_plot_marks_did_not_learn_at_the_tables_figures(sweep: Any, figures: dict[str, Any]) -> None:
    from lorabench.report.plots import memory_vs_quality

    (plot,) = memory_vs_quality(sweep, Path("/nonexistent"))
    ax = figures[plot.path.name].axes[0]
    handles, labels = ax.get_legend_handles_labels()
    assert "did not learn" in labels
    mark = handles[labels.index("did not learn")]
    row = sweep[(sweep["method"] == "dora") & (sweep["rank"] == 8)].iloc[0]
    assert [tuple(o) for o in mark.get_offsets()] == [
        (pytest.approx(row["peak_mem_train_mb_mean"]), pytest.approx(row["perplexity_mean"]))
    ]
    assert "inside the noise" in ax.get_xlabel()


def test_throughput_diamonds_are_the_leaderboard_tokens_per_s(figures: dict[str, Any]) -> None:
    """IA3-style stalls: the box is every step, the diamond the table's median-step figure."""
    import json

    from lorabench.report.leaderboard import leaderboard
    from lorabench.report.plots import throughput
    from tests.report_fixture import BASELINE, typed

    records = [json.loads(p.read_text()) for p in sorted(BASELINE.glob("runs/*/record.json"))]
    for rec in records:
        if rec["spec"]["method"] == "ia3":
            steps = [0.174] * 38 + [3.0] * 4
            rec["profile"].update(step_s=steps, timed_steps=42, timed_tokens=512 * 42)
    recs = typed(records)
    num, _md = leaderboard(recs)
    (plot,) = throughput(recs, Path("/nonexistent"), num)
    ax = figures[plot.path.name].axes[0]
    handles, labels = ax.get_legend_handles_labels()
    diamonds = handles[labels.index("leaderboard")].get_offsets()
    names = [t.get_text() for t in ax.get_yticklabels()]
    ia3 = names.index("tiny-gpt2 ia3@fp32")
    want = num.loc[num["method"] == "ia3", "tokens_per_s_mean"].iloc[0]
    assert want == pytest.approx(512 / 0.174)
    assert diamonds[[int(y) for y in diamonds[:, 1]].index(ia3)][0] == pytest.approx(want)
    assert [d[0] for d in sorted(diamonds.tolist(), key=lambda d: d[1])] == sorted(diamonds[:, 0], reverse=True)
