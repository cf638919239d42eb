"""report.html: built from records alone, self-contained, and driven in a real browser.

The browser tests run Debian's chromium (/usr/bin/chromium) through Playwright's Python
package. They skip where chromium is absent, except under CI=true, where a missing
browser is a failure (.ci/run installs it). LORABENCH_REPORT_SHOTS=DIR keeps screenshots
at 1400 and 420 px wide in DIR.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from lorabench.metrics import METRICS
from lorabench.record_data import Profile, Record
from lorabench.stats import aggregate
from tests.report_fixture import BASELINE, build_result_set, typed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from report_shots import ARGS, CHROMIUM, shoot  # the README's screenshots use the same browser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A 2-seed result set from the smoke baseline, with its report built against that baseline."""
    from lorabench.report import build_report

    out, records = build_result_set(tmp_path_factory.mktemp("page") / "set")
    records[0]["error"] = None
    bad = next(r for r in records if r["spec"]["task"] == "synthetic-sentiment")
    bad["label"] = "</script><script>alert(1)</script>"
    build_report(out, typed(records), baseline=BASELINE)
    return out, records


def page_data(out: Path) -> dict[str, Any]:
    text = (out / "report.html").read_text(encoding="utf-8")
    m = re.search(r'<script id="lb-data" type="application/json">(.*?)</script>', text, re.S)
    assert m, "report.html has no data block"
    return json.loads(m.group(1))


def test_page_is_self_contained_small_and_escaped(report: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = report
    text = (out / "report.html").read_text(encoding="utf-8")
    assert len(text.encode()) < 3_500_000, "the page should stay under a few MB"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "nothing loaded from the network"
    assert "alert(1)</script>" not in text and "\\u003c/script\\u003e" in text  # data cannot close its <script>
    data = page_data(out)
    assert data["baseline"] == str(BASELINE) and data["compare"]
    cfg = {row["task"]: row for row in data["config"]}
    assert cfg["synthetic-lm"]["lr"] == "0.003" and cfg["synthetic-lm"]["seeds"] == "0, 1"
    # The learning-rate warm-up and the untimed first steps are different settings, each named.
    assert cfg["synthetic-lm"]["lr warm-up"] == "0" and cfg["synthetic-lm"]["untimed steps"] == "5"
    assert data["created"] and data["generated"]


def test_every_summarisation_run_has_predictions_with_inputs(report: tuple[Path, list[dict[str, Any]]]) -> None:
    out, records = report
    data = page_data(out)
    summ = [r for r in records if r["spec"]["task_options"]["type"] == "summarization" and r["status"] == "success"]
    assert summ
    for r in summ:
        preds = data["runs"][r["run_id"]]["predictions"]
        assert preds and all(p["input"] and p["reference"] and p["prediction"] for p in preds)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert all(f"**{r['label']}**" in md for r in summ) and "- input: `Alice: meet" in md


def test_page_figures_are_the_records_figures(report: tuple[Path, list[dict[str, Any]]]) -> None:
    """Every figure on the page, recomputed from the records: mean over seeds, band, text."""
    from lorabench.metrics import record_values

    out, records = report
    data = page_data(out)
    by_id = {r["run_id"]: r for r in records}
    checked = 0
    for p in data["points"]:
        ok = [by_id[i] for i in p["runs"] if by_id[i]["status"] == "success"]
        for name, v in p["values"].items():
            agg = aggregate(record_values(Record.from_dict(r)).get(name) for r in ok)
            assert agg is not None
            assert v["v"] == pytest.approx(agg.mean, rel=1e-12), (p["label"], name)
            lo, hi, kind = agg.band()
            assert (v["lo"], v["hi"], v["band"]) == (pytest.approx(lo), pytest.approx(hi), kind)
            assert v["t"] == METRICS.get(name).format_agg(agg)
            checked += 1
    assert checked > 100


def test_two_seeds_show_min_max_not_a_t_interval() -> None:
    agg = aggregate([10_000.0, 12_000.0])
    assert agg is not None and agg.band() == (10_000.0, 12_000.0, "minmax")
    assert METRICS.get("tokens_per_s").format_agg(agg) == "11,000 (10,000–12,000)"
    three = aggregate([1.0, 2.0, 3.0])
    assert three is not None and three.band()[2] == "t95"
    assert METRICS.get("perplexity").format_agg(three) == METRICS.get("perplexity").format_ci(2.0, three.half, 3)


def test_a_rebuild_without_baseline_drops_the_old_comparison(tmp_path: Path) -> None:
    from lorabench.report import build_report

    out, records = build_result_set(tmp_path / "set", seeds=1)
    records = [r for r in records if r["spec"]["task"] != "synthetic-lm"]
    build_report(out, typed(records), run_ids=[r["run_id"] for r in records], baseline=BASELINE)
    assert (out / "compare.md").is_file()
    build_report(out, typed(records), run_ids=[r["run_id"] for r in records])
    assert not (out / "compare.md").exists() and page_data(out)["compare"] is None


# -- in the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but no chromium at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (requirements.lock)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser: Any, out: Path, width: int = 1400) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "report.html").resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready", timeout=120_000)
    assert page.evaluate("document.body.dataset.ready") == "1", problems
    return page, problems, requests


def test_page_loads_from_file_without_errors_or_network(
    browser: Any, report: tuple[Path, list[dict[str, Any]]]
) -> None:
    out, _ = report
    shots = os.environ.get("LORABENCH_REPORT_SHOTS")
    for width in (1400, 420):
        page, problems, requests = open_page(browser, out, width)
        assert problems == []
        assert requests == [(out / "report.html").resolve().as_uri()], "the page requested something besides itself"
        assert page.locator("#summary .task-summary").count() == 3
        assert page.locator("#pareto-chart .main-svg").count() > 0  # Plotly drew
        assert page.locator("#curves-chart .scatterlayer .trace").count() > 0
        assert page.locator("#compare-t tbody tr").count() > 0
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"report-{width}.png"), full_page=True)
        page.close()


OVERFLOW = """sel => [...document.querySelectorAll(sel)]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.closest('[data-task]')?.dataset.task || e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


def test_tables_fit_at_1400_and_the_primary_metric_shows_at_420(
    browser: Any, report: tuple[Path, list[dict[str, Any]]]
) -> None:
    """No horizontal scrolling for leaderboards and compare on a desktop; on a phone the
    primary metric (the column people read first) is on screen without scrolling sideways."""
    out, _ = report
    page, problems, _ = open_page(browser, out, 1400)
    assert page.locator("#compare-t tbody tr").count() > 0
    assert page.evaluate(OVERFLOW, "#leaderboards, #leaderboards .wrap, #compare, #compare .wrap, body") == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.close()
    page, problems, _ = open_page(browser, out, 420)
    assert page.evaluate("document.documentElement.scrollWidth") <= 420  # wide tables scroll inside their box
    boards = page.locator(".board")
    assert boards.count() == 3
    for i in range(boards.count()):
        cell = boards.nth(i).locator("tbody tr").first.locator("td.primary")
        box = cell.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 420, (i, box)
        assert cell.is_visible()
    assert problems == []
    page.close()


def test_a_sweep_with_forgetting_and_time_to_target_fits_at_1400(browser: Any, tmp_path: Path) -> None:
    """The committed real-weights sweep (selected-rate labels, forgetting and to-target columns) at 1400 px:
    no table scrolls sideways, and each row names its rank beside its method, before the selected rate."""
    from lorabench.record import load_records
    from lorabench.report import build_report

    src = Path(__file__).resolve().parents[1] / "results" / "examples-real-fair"
    out = tmp_path / "fair"
    (out / "runs").mkdir(parents=True)
    (out / "suite.yaml").write_text((src / "suite.yaml").read_text())  # the select block the report reads
    build_report(out, load_records(src))
    page, problems, _ = open_page(browser, out, 1400)
    assert page.evaluate(OVERFLOW, "#leaderboards, #leaderboards .wrap, #config-table, body") == []
    points = page.locator('.board[data-task="imdb"] tbody tr').evaluate_all(
        "rows => rows.map(r => r.children[0].textContent)"
    )
    assert "minilm lora-r8 @nf4 (lr=0.003 selected)" in points and len(points) == 5
    (cfg,) = page_data(out)["config"]
    assert cfg["lr"] == (
        "dora: 0.001 / 0.003 / 0.01; full: 3e-05 / 0.0001 / 0.0003; ia3: 0.01 / 0.03 / 0.1; lora: 0.001 / 0.003 / 0.01"
    )  # each method's rates, not one list of every rate
    assert problems == []
    page.close()


def _column(page: Any, task: str, index: int) -> list[str]:
    return page.locator(f'.board[data-task="{task}"] tbody tr').evaluate_all(
        f"rows => rows.map(r => r.children[{index}].textContent)"
    )


def test_header_click_sorts_and_filter_hides_rows(browser: Any, report: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = report
    page, problems, _ = open_page(browser, out)
    task = "synthetic-lm"
    heads = page.locator(f'.board[data-task="{task}"] thead th')
    names = heads.evaluate_all("hs => hs.map(h => h.dataset.key)")
    col = names.index("trainable_params")
    page.locator(f'.board[data-task="{task}"] th[data-key="trainable_params"]').click()
    first = [int(v.replace(",", "")) for v in _column(page, task, col)]
    assert first == sorted(first)  # lower is better: best first
    assert (
        page.locator(f'.board[data-task="{task}"] th[data-key="trainable_params"]').get_attribute("aria-sort")
        == "ascending"
    )
    page.locator(f'.board[data-task="{task}"] th[data-key="trainable_params"]').click()
    assert [int(v.replace(",", "")) for v in _column(page, task, col)] == sorted(first, reverse=True)
    rows = page.locator(f'.board[data-task="{task}"] tbody tr').count()
    page.select_option("#f-precision", "nf4")
    kept = page.locator(f'.board[data-task="{task}"] tbody tr')
    assert 0 < kept.count() < rows
    assert all("@nf4" in t for t in kept.evaluate_all("rs => rs.map(r => r.children[0].textContent)"))
    page.select_option("#f-task", "synthetic-sentiment")
    assert page.locator(f'.board[data-task="{task}"]').count() == 0
    assert page.locator('.board[data-task="synthetic-sentiment"]').count() == 1
    assert problems == []


def test_axis_selector_redraws_and_drill_down_opens(browser: Any, report: tuple[Path, list[dict[str, Any]]]) -> None:
    out, records = report
    page, problems, _ = open_page(browser, out)
    assert page.locator("#p-task").input_value() == "synthetic-lm"  # the task with most points
    before = page.locator("#pareto-chart .xtitle").text_content()
    page.select_option("#p-x", "tokens_per_s")
    assert page.locator("#pareto-chart").get_attribute("data-axes").endswith("|tokens_per_s")
    after = page.locator("#pareto-chart .xtitle").text_content()
    assert after != before and "tokens/s" in after
    page.select_option("#p-y", "token_accuracy")
    assert page.locator("#pareto-chart .ytitle").text_content().startswith("token_accuracy")
    page.select_option("#f-task", "synthetic-dialogsum")
    page.locator('.board[data-task="synthetic-dialogsum"] tbody tr').first.click()
    dialog = page.locator("#drill")
    assert dialog.is_visible()
    assert "synthetic-dialogsum" in page.locator("#drill-title").text_content()
    run = next(r for r in records if r["spec"]["task"] == "synthetic-dialogsum")
    assert run["run_id"] in dialog.text_content()
    assert page.locator("#drill .pred tbody tr").count() >= 3 and "Alice:" in dialog.text_content()
    page.click("#drill-close")
    assert not dialog.is_visible()
    assert problems == []


def test_summary_bar_labels_sit_inside_their_bars_clear_of_the_whiskers(
    browser: Any, report: tuple[Path, list[dict[str, Any]]]
) -> None:
    """Labels at a bar's end ran into its whisker and off the plot; at its base they do neither."""
    out, _ = report
    page, problems, _ = open_page(browser, out)
    boxes = page.evaluate(
        """() => {
            const whiskers = [...document.querySelectorAll("#summary-chart .errorbar path")];
            return [...document.querySelectorAll("#summary-chart .bars .point")].map((g, i) => {
                const bar = g.querySelector("path").getBoundingClientRect(), t = g.querySelector("text");
                const text = t ? t.getBoundingClientRect() : null, w = whiskers[i] && whiskers[i].getBoundingClientRect();
                return {bar: [bar.left, bar.right], text: text ? [text.left, text.right] : null,
                        whisker: w ? [w.left, w.right] : null};
            });
        }"""
    )
    assert boxes and all(b["text"] for b in boxes)
    assert any(b["whisker"] and b["whisker"][1] - b["whisker"][0] > 2 for b in boxes)  # the fixture has bands
    for b in boxes:
        assert b["bar"][0] - 0.5 <= b["text"][0] and b["text"][1] <= b["bar"][1] + 0.5, b
        if b["whisker"]:
            assert b["text"][1] <= b["whisker"][0] + 0.5, b  # the label ends before the band begins
    assert problems == []


# -- one derivation per figure ---------------------------------------------------------------


def _raw_figures(rec: dict[str, Any]) -> dict[str, float]:
    """A record's figures recomputed from its raw fields, independently of lorabench.metrics."""
    prof = rec["profile"]
    steps = sorted(prof["step_s"])
    out = {k: float(v) for k, v in rec["metrics"].items()}
    out["tokens_per_s"] = prof["timed_tokens"] / prof["timed_steps"] / statistics.median(steps)
    out["step_ms"] = 1000 * statistics.median(steps)
    for phase in ("train", "eval"):
        mem = prof["memory_mb"][phase]
        out[f"peak_mem_{phase}_mb"] = next(float(mem[s]) for s in ("nvml", "reserved", "rss") if mem.get(s) is not None)
    for key in (
        "trainable_params",
        "total_params",
        "trainable_pct",
        "train_s",
        "eval_s",
        "samples_per_s",
        "mfu",
        "adapter_bytes",
    ):
        if prof.get(key) is not None:
            out[key] = float(prof[key])
    if (prof.get("estimate_bytes") or {}).get("allocated"):
        out["estimate_mb"] = prof["estimate_bytes"]["allocated"] / 2**20
    return out


def _band(values: list[float]) -> tuple[float, float]:
    """The band a reader is shown: min-max with 2 seeds, the 95% Student-t interval from 3."""
    if len(values) == 2:
        return min(values), max(values)
    half = {3: 4.302652729911275, 4: 3.182446305284263}[len(values)] * statistics.stdev(values) / len(values) ** 0.5
    return statistics.fmean(values) - half, statistics.fmean(values) + half


def test_every_leaderboard_figure_recomputed_from_the_records(report: tuple[Path, list[dict[str, Any]]]) -> None:
    """Every figure column of leaderboard.csv (mean, std, n, band) and runs.csv, every cell of the page's
    tables and the markdown leaderboard's bands, recomputed from the raw records; none left unchecked."""
    import pandas as pd

    from lorabench.report.escape import csv_unneutralise

    out, records = report
    board = pd.read_csv(out / "leaderboard.csv")
    runs = pd.read_csv(out / "runs.csv").set_index("run_id")
    page = {p["label"]: p for p in page_data(out)["points"]}
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    checked: set[str] = set()
    for _, row in board.iterrows():
        rank = None if pd.isna(row["rank"]) else int(row["rank"])
        key = (row["task"], row["model"], row["method"], rank, row["precision"])
        recs = [
            r
            for r in records
            if r["status"] == "success"
            and (
                r["spec"]["task"],
                r["spec"]["model"]["name"],
                r["spec"]["method"],
                r["spec"]["rank"],
                r["spec"]["precision"],
            )
            == key
        ]
        figures = [_raw_figures(r) for r in recs]
        label = f"{key[1]} {key[2] if rank is None else f'{key[2]}-r{rank}'} @{key[4]}"
        assert row["n"] == len(recs) == page[label]["n"]
        # The alpha the run used: as the method resolved it, else as the suite set it.
        alphas = {
            next(
                (v for v in ((r.get("resolved") or {}).get("method", {}).get(k) for k in ("lora_alpha", "alpha")) if v),
                (r["spec"].get("method_options") or {}).get("alpha"),
            )
            for r in recs
        }
        assert csv_unneutralise(str(row["alpha"])) == (" / ".join(f"{a:g}" for a in sorted(alphas - {None})) or "-")
        for name in figures[0]:
            values = [f[name] for f in figures]
            want = statistics.fmean(values)
            assert row[f"{name}_mean"] == pytest.approx(want, rel=1e-9), (key, name)
            assert row[f"{name}_n"] == len(values)
            assert row[f"{name}_std"] == pytest.approx(statistics.stdev(values), rel=1e-6, abs=1e-12)
            lo, hi = _band(values)
            assert (row[f"{name}_lo"], row[f"{name}_hi"]) == (pytest.approx(lo), pytest.approx(hi)), (key, name)
            for r, f in zip(recs, figures):
                assert runs.loc[r["run_id"], name] == pytest.approx(f[name], rel=1e-9), (r["run_id"], name)
            checked.add(name)
            cell = page[label]["values"].get(name)
            if cell is None:  # not a column of the page's table (eval memory): leaderboard.csv only
                continue
            assert cell["v"] == pytest.approx(want, rel=1e-9)
            assert (cell["lo"], cell["hi"]) == (pytest.approx(lo), pytest.approx(hi))
            m = METRICS.get(name)
            assert cell["t"] == f"{m.format(want)} ({m.format(lo, ref=want)}–{m.format(hi, ref=want)})" or lo == hi
            if name == row["primary_metric"] or name == "tokens_per_s":
                assert cell["t"] in md, (label, name)  # the markdown table shows the same band
        assert set(page[label]["values"]) <= checked
    figure_columns = {c.removesuffix("_mean") for c in board.columns if c.endswith("_mean")}
    assert figure_columns == checked, f"leaderboard figures no test recomputes: {figure_columns - checked}"
    assert len(checked) >= 20


def test_tokens_per_s_is_the_median_step_everywhere() -> None:
    """IA3 on the smoke suite: a few stalled steps made the mean 1,084 tokens/s; its median step gives ~2,950."""
    from lorabench.metrics import median_tokens_per_s, record_values
    from lorabench.report.leaderboard import leaderboard, runs_frame

    steps = [0.174] * 38 + [3.0] * 4  # 42 timed steps, 4 of them stalled
    tokens = 512 * len(steps)
    profile = {"step_s": steps, "timed_steps": len(steps), "timed_tokens": tokens, "timed_s": sum(steps)}
    profile["tokens_per_s"] = tokens / sum(steps)  # what the trainer records: the mean
    rec = json.loads(next(BASELINE.glob("runs/*/record.json")).read_text())
    rec["profile"].update(profile)
    median = 512 / 0.174
    assert profile["tokens_per_s"] < median / 2  # the mean, dragged down by 4 stalls
    assert median_tokens_per_s(Profile.from_dict(profile)) == pytest.approx(median)
    assert record_values(Record.from_dict(rec))["tokens_per_s"] == pytest.approx(median)
    assert runs_frame(typed([rec]))["tokens_per_s"][0] == pytest.approx(median)
    num, md = leaderboard(typed([rec]))
    assert num["tokens_per_s_mean"][0] == pytest.approx(median) and "2,943" in md


def test_pareto_needs_a_difference_outside_the_noise_on_both_axes() -> None:
    """Two seeds with identical RSS have a zero-width band; 7 MiB apart is still inside RSS's 3% noise."""
    from lorabench.report.leaderboard import pareto_points
    from lorabench.report.results import Run, group

    def runs(name: str, ppl: float, mem: float) -> list[Run]:
        return [
            Run(
                f"{name}{s}",
                ("t", "m", name, 8, "fp32"),
                s,
                "success",
                {"perplexity": ppl + s / 100, "peak_mem_train_mb": mem},
                None,
                (),
            )
            for s in range(2)
        ]

    points = group(runs("full", 3.7, 559.0) + runs("lora", 5.7, 552.0) + runs("bitfit", 8.3, 552.0))
    assert {points[i].key[2] for i in pareto_points(points, "perplexity")} == {"full"}


def test_static_plots_order_ranks_as_numbers_and_label_log_axes_plainly() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lorabench.report.plots import _plain_log_labels, _run_order

    recs = [
        Record(
            run_id=f"r{r}",
            label="l",
            suite="s",
            status="success",
            spec={"model": {"name": "m"}, "method": "lora", "rank": r, "precision": "fp32", "seed": 0},
        )
        for r in (16, 32, 4, 8)
    ]
    assert [r.spec["rank"] for r in sorted(recs, key=_run_order)] == [4, 8, 16, 32]
    fig, ax = plt.subplots()
    ax.plot([0.4, 3.3], [1, 2])
    ax.set_xscale("log")
    _plain_log_labels(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_text()]
    plt.close(fig)
    assert labels and all(re.fullmatch(r"[0-9.]+", t) for t in labels), labels


def test_the_readme_screenshots_script_shoots_both_views(
    browser: Any, report: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """scripts/report_shots.py: the page at 1400 px down to the Pareto chart, a drill-down at 420 px."""
    import struct

    out, _ = report
    desktop, phone = shoot(out, tmp_path / "shots", "synthetic-dialogsum", browser)
    width = {p.name: struct.unpack(">II", p.read_bytes()[16:24]) for p in (desktop, phone)}
    assert width["report-desktop.png"][0] == 1400 and width["report-desktop.png"][1] > 900
    assert width["report-phone-drilldown.png"][0] <= 420 and width["report-phone-drilldown.png"][1] > 300
