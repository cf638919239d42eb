"""The row type every data loader returns, and its error: the bottom of the data stage.

Both the source dispatcher (``sources``) and the file parsers (``files``) use them, so
they live here rather than in either, which keeps the two modules from importing each other.
"""

from __future__ import annotations

from typing import Any

from lorabench.errors import UsageError

Rows = list[dict[str, Any]]


class DataError(UsageError):
    """Task data is missing or malformed; the message names the task and file."""
