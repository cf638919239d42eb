"""Local data files: csv, tsv, json (a list of objects), jsonl and plain text."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from lorabench.data.sources import DataError, Rows

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".txt": "text", ".raw": "text"}


def load_file(path: str, fmt: str, task: str) -> Rows:
    """Read ``path`` as rows; text files become one row per blank-line-separated paragraph."""
    if not os.path.isfile(path):
        raise DataError(f"task {task!r}: data file not found: {path}")
    if fmt == "auto":
        ext = os.path.splitext(path)[1].lower()
        if ext not in FORMATS:
            raise DataError(f"task {task!r}: cannot tell the format of {path} from its extension; set `format`")
        fmt = FORMATS[ext]
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if fmt in ("csv", "tsv"):
                return [dict(r) for r in csv.DictReader(fh, delimiter="," if fmt == "csv" else "\t")]
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
    return [{"text": p.strip()} for p in text.split("\n\n") if p.strip()]


def _obj(value: Any, path: str, line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path}:{line}: expected a JSON object, got {type(value).__name__}")
    return value
