"""Report stage: records → runs.csv, leaderboard (md/csv), plots and a report, from records alone."""

from lorabench.report.build import build_report

__all__ = ["build_report"]
