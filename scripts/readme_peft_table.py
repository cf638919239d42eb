"""Rewrite README.md's peft-type table from the tested table of cases.

    python scripts/readme_peft_table.py        # after changing lorabench/methods/peft_zoo.py

It splices ``lorabench list methods --peft-types --markdown`` between the README's
``<!-- peft-types:start -->`` / ``<!-- peft-types:end -->`` markers;
tests/test_peft_zoo.py fails while the README differs from that output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

START, END = "<!-- peft-types:start -->\n", "<!-- peft-types:end -->"


def main() -> int:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    table = subprocess.run(
        [sys.executable, "-m", "lorabench", "list", "methods", "--peft-types", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=readme.parent,
    ).stdout
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + table + END + tail, encoding="utf-8")
    print(f"{readme}: peft-type table rewritten ({table.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
