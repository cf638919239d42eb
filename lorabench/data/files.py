"""Local data files: csv, tsv, json (a list of objects), jsonl and plain text.

Which columns a task reads, label names and text cleanup are declared in the suite
and applied by :func:`lorabench.data.sources.load_columns`; this module only parses.
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any

from lorabench.data.rows import DataError, Rows

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".txt": "text", ".raw": "text"}


def load_file(path: str, fmt: str, task: str, text_rows: str = "paragraphs") -> Rows:
    """Read ``path`` as rows; text files give one ``text`` row per paragraph or per line.

    Line endings are normalised (WikiText's raw files use ``\\r\\n``), except inside csv
    fields, which the csv module reads verbatim.
    """
    if not os.path.isfile(path):
        raise DataError(f"task {task!r}: data file not found: {path}")
    if fmt == "auto":
        ext = os.path.splitext(path)[1].lower()
        if ext not in FORMATS:
            raise DataError(f"task {task!r}: cannot tell the format of {path} from its extension; set `format`")
        fmt = FORMATS[ext]
    try:
        with open(path, encoding="utf-8", newline="" if fmt in ("csv", "tsv") else None) as fh:
            if fmt in ("csv", "tsv"):
                reader = csv.DictReader(fh, delimiter="," if fmt == "csv" else "\t")
                if reader.fieldnames is None:
                    return []
                return [dict(r) for r in reader]
            if fmt == "jsonl":
                return [_obj(json.loads(line), path, i + 1) for i, line in enumerate(fh) if line.strip()]
            if fmt == "json":
                data: Any = json.load(fh)
                if not isinstance(data, list):
                    raise DataError(f"task {task!r}: {path} must hold a JSON list of objects")
                return [_obj(r, path, i + 1) for i, r in enumerate(data)]
            text = fh.read()
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(f"task {task!r}: cannot parse {path} as {fmt}: {exc}") from None
    parts = text.split("\n") if text_rows == "lines" else re.split(r"\n[ \t]*\n", text)
    return [{"text": p.strip()} for p in parts if p.strip()]


def _obj(value: Any, path: str, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}:{line}: expected a JSON object, got {type(value).__name__}")
    return value
