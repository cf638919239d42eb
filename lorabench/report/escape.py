"""Names and messages come from data (suites, records): they must not break a table or a spreadsheet.

Markdown: a ``|`` in a cell would split it and shift every later column; a newline would
end the table or a heading. CSV: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return is a formula to Excel, LibreOffice and Google Sheets (CSV
injection); following OWASP's guidance, such a *text* cell is prefixed with ``'``.
Numbers stay numbers (``-0.5`` in a numeric column is not text). ``lorabench report
--raw-csv`` writes text cells unchanged for tools that need the raw values;
:func:`csv_unneutralise` undoes the prefix when lorabench reads its own CSV back.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

#: OWASP CSV injection: cells starting with these are formulas to spreadsheet programs.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_NEWLINES = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")


def md_text(text: Any) -> str:
    """One line of Markdown text: line breaks become spaces (a newline would end a list item or heading)."""
    return _NEWLINES.sub(" ", str(text))


def md_cell(text: Any) -> str:
    """A Markdown table cell: one line, and ``|`` escaped as ``\\|`` so it stays inside its cell."""
    return md_text(text).replace("\\", "\\\\").replace("|", "\\|")


def csv_neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ``'``; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_unneutralise(value: Any) -> Any:
    """The raw text of a cell written by :func:`csv_neutralise` (reading lorabench's own CSV back)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_START):
        return value[1:]
    return value


def csv_safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell neutralised; numeric columns are left as they are."""
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):  # text (object or pandas' str dtype)
            out[col] = out[col].map(csv_neutralise).astype(object)
    out.columns = [csv_neutralise(str(c)) for c in out.columns]
    return out
