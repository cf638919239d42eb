"""Thin, torch-free targets for the forkserver (the worker module is imported lazily)."""

from __future__ import annotations

from typing import Any


def prepare(paths: list[str], log_path: str, conn: Any) -> None:
    from lorabench.run.worker import prepare_main

    prepare_main(paths, log_path, conn)


def noop(conn: Any) -> None:
    from lorabench.run.worker import noop_main

    noop_main(conn)


def run(spec_dict: dict[str, Any], run_dir: str, conn: Any) -> None:
    from lorabench.run.worker import child_main

    child_main(spec_dict, run_dir, conn)
