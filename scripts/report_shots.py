"""Screenshots of a results directory's report.html, as the README shows them.

    python scripts/report_shots.py RESULTS_DIR OUT_DIR [--task TASK]

Writes OUT_DIR/report-desktop.png (1400 px wide, from the top down to the end of the
Pareto chart) and OUT_DIR/report-phone-drilldown.png (420 px wide: the drill-down of the
first leaderboard row of TASK, whole, its loss chart included). Drives Debian's chromium
(/usr/bin/chromium, or LORABENCH_CHROMIUM) through Playwright's Python package, headless
and offline, as tests/test_report_page.py does. Writes nothing but the two files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHROMIUM = os.environ.get("LORABENCH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _open(browser: object, page_file: Path, width: int, height: int) -> object:
    page = browser.new_page(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    page.goto(page_file.resolve().as_uri())
    page.wait_for_function("document.body.dataset.ready", timeout=120_000)
    return page


def shoot(results: Path, out: Path, task: str | None = None, browser: object | None = None) -> list[Path]:
    """Both screenshots of ``results/report.html`` into ``out``; returns their paths.

    ``browser``: a Playwright browser already launched (the tests'), else one is started here.
    """
    page_file = results / "report.html"
    if not page_file.is_file():
        raise SystemExit(f"report_shots: no report.html in {results} (run `lorabench report {results}` first)")
    if browser is None:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            raise SystemExit(f"report_shots: no chromium at {CHROMIUM} (apt-get install chromium)")
        with sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                return shoot(results, out, task, launched)
            finally:
                launched.close()
    out.mkdir(parents=True, exist_ok=True)
    desktop, phone = out / "report-desktop.png", out / "report-phone-drilldown.png"
    page = _open(browser, page_file, 1400, 900)
    bottom = page.evaluate(
        "(() => { const r = document.querySelector('#pareto-chart').getBoundingClientRect();"
        " return r.bottom + window.scrollY + 16; })()"
    )
    page.screenshot(path=str(desktop), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": bottom})
    page.close()
    page = _open(browser, page_file, 420, 2400)  # tall enough for the whole dialog
    if task:
        page.select_option("#f-task", task)
    page.locator(f'.board[data-task="{task}"] tbody tr' if task else ".board tbody tr").first.click()
    page.locator("#drill").wait_for(state="visible")
    page.wait_for_timeout(500)  # Plotly draws the dialog's charts after it opens
    page.locator("#drill").screenshot(path=str(phone))
    page.close()
    return [desktop, phone]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a lorabench results directory holding report.html")
    ap.add_argument("out", type=Path, help="where to write the two PNGs (e.g. docs)")
    ap.add_argument("--task", help="the task whose first leaderboard row is drilled into (default: the first)")
    args = ap.parse_args(argv)
    for path in shoot(args.results, args.out, args.task):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
