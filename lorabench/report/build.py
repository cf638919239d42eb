"""Write every output file of a results directory from its records alone."""

from __future__ import annotations

import base64
import html
import itertools
import json
from pathlib import Path
from typing import Any

from lorabench.report.leaderboard import leaderboard, markdown_table, runs_frame
from lorabench.report.plots import make_plots


def _env_summary(records: list[dict[str, Any]]) -> list[str]:
    envs = {
        json.dumps(
            {
                k: r.get("env", {}).get(k)
                for k in ("device_name", "torch", "transformers", "peft", "bitsandbytes", "git_sha", "git_dirty")
            },
            sort_keys=True,
        )
        for r in records
        if r.get("env")
    }
    lines = []
    for e in sorted(envs):
        d = json.loads(e)
        sha = (d.get("git_sha") or "?")[:10] + (" (dirty)" if d.get("git_dirty") else "")
        lines.append(
            f"- device: {d.get('device_name')}; torch {d.get('torch')}, transformers {d.get('transformers')}, "
            f"peft {d.get('peft')}, bitsandbytes {d.get('bitsandbytes')}; lorabench {sha}"
        )
    return lines


def _examples(out_dir: Path, records: list[dict[str, Any]], k: int = 3) -> list[str]:
    lines = []
    for rec in records:
        if rec["status"] != "success":
            continue
        path = out_dir / "runs" / rec["run_id"] / "predictions.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in itertools.islice(fh, k)]
        lines.append(f"**{rec['label']}**\n")
        for r in rows:
            lines.append(f"- ref: `{str(r.get('reference'))[:160]}`  \n  pred: `{str(r.get('prediction'))[:160]}`")
        lines.append("")
        if len(lines) > 40:
            break
    return lines


def build_report(out_dir: Path, records: list[dict[str, Any]]) -> dict[str, Path]:
    """runs.csv, leaderboard.{csv,md}, plots/*.png, report.md and a self-contained report.html."""
    out_dir = Path(out_dir)
    runs = runs_frame(records)
    runs.drop(columns=["mem_source"], errors="ignore").to_csv(out_dir / "runs.csv", index=False)
    num, disp = leaderboard(records)
    num.to_csv(out_dir / "leaderboard.csv", index=False)
    table = markdown_table(disp)
    (out_dir / "leaderboard.md").write_text(table, encoding="utf-8")
    plots = make_plots(num, out_dir / "plots", records)
    suite = records[0]["suite"] if records else out_dir.name
    failures = [r for r in records if r["status"] != "success"]
    md = [
        f"# lorabench report: {suite}",
        "",
        f"{len(records)} runs; leaderboard rows aggregate seeds (mean ± std over successful seeds, n).",
        "",
        "## Environment",
        "",
        *_env_summary(records),
        "",
        "## Leaderboard",
        "",
        table,
    ]
    md += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if failures:
        md += (
            ["## Failed runs", ""]
            + [f"- `{r['label']}` ({r['run_id']}): **{r['status']}**: {r['error']}" for r in failures]
            + [""]
        )
    ex = _examples(out_dir, records)
    if ex:
        md += ["## Prediction examples", "", *ex]
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    _write_html(out_dir, suite, disp, plots, failures)
    return {"runs": out_dir / "runs.csv", "leaderboard": out_dir / "leaderboard.md", "report": out_dir / "report.md"}


def _write_html(out_dir: Path, suite: str, disp: Any, plots: list[Path], failures: list[dict[str, Any]]) -> None:
    imgs = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in plots
    )
    fails = "".join(
        f"<li><code>{html.escape(r['label'])}</code>: <b>{r['status']}</b>: {html.escape(str(r['error']))}</li>"
        for r in failures
    )
    table = (
        disp.drop(columns=["primary_metric", "seeds"], errors="ignore").to_html(index=False, border=0)
        if len(disp)
        else ""
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>lorabench: {html.escape(suite)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>lorabench report: {html.escape(suite)}</h1><h2>Leaderboard</h2>{table}<h2>Plots</h2>{imgs}
{"<h2>Failed runs</h2><ul>" + fails + "</ul>" if fails else ""}</body></html>"""
    (out_dir / "report.html").write_text(page, encoding="utf-8")
