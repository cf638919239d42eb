"""Error types that the CLI turns into exit code 2 with a clean message (no traceback)."""

from __future__ import annotations

from dataclasses import dataclass


class UsageError(Exception):
    """Bad input from the user: a wrong name, a missing file, an invalid option."""


@dataclass(frozen=True)
class Issue:
    """One problem found in a suite file, located at ``file:line``."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class SuiteError(UsageError):
    """All problems found in a suite, reported together (torchtune's ConfigError idea)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        n = len(self.issues)
        head = f"suite is invalid ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))
