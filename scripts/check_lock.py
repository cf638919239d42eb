"""Lock drift: does this interpreter's environment hold exactly what requirements.lock pins?

    python scripts/check_lock.py [--lock requirements.lock] [--locked-only] [--drift-ok | --missing]

Fails (exit 1) when a locked package is missing or at another version, and, unless
``--locked-only``, when a package the lock does not list is installed in the venv itself
(packages seen through ``--system-site-packages`` are the user's, not ours). torch,
triton, nvidia-* CUDA wheels, pip and lorabench are never locked: the torch build
belongs to the machine. Standard library only, so it runs before anything is installed.

On a machine with no registry (``make install WHEELS=DIR``) the preinstalled versions are
kept, so drift is expected: ``--drift-ok`` lists it as a warning and exits 0, and
``--missing`` prints the pins of the locked packages not installed at all (the
constraints for installing them from wheels).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

UNLOCKED = re.compile(r"^(torch|triton|nvidia-(?!ml-py$)[a-z0-9-]+|pip|lorabench)$")


def normalise(name: str) -> str:
    """PEP 503 name normalisation (``PyYAML`` == ``pyyaml``, ``rouge_score`` == ``rouge-score``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """``{normalised name: version}`` from a ``name==version`` file; anything else is an error."""
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{lineno}: expected NAME==VERSION, got {raw!r}")
        key = normalise(name.strip())
        if key in pins:
            raise ValueError(f"{path}:{lineno}: {name.strip()} is pinned twice")
        pins[key] = version.strip()
    return pins


def installed(venv_only: bool) -> dict[str, str]:
    """``{normalised name: version}`` of installed distributions (optionally only the venv's own)."""
    prefix = Path(sys.prefix).resolve()
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        if venv_only:
            location = Path(str(dist.locate_file(""))).resolve()
            if prefix not in location.parents and location != prefix:
                continue
        found.setdefault(normalise(name), dist.version)
    return found


def drift(pins: dict[str, str], have: dict[str, str], extras: dict[str, str] | None) -> list[str]:
    """Every difference between the lock and the environment, one line each."""
    problems = []
    for name, version in sorted(pins.items()):
        if name not in have:
            problems.append(f"missing: {name}=={version}")
        elif have[name] != version:
            problems.append(f"version: {name} is {have[name]}, the lock pins {version}")
    for name, version in sorted((extras or {}).items()):
        if name not in pins and not UNLOCKED.match(name):
            problems.append(f"not in the lock: {name}=={version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default=str(Path(__file__).resolve().parents[1] / "requirements.lock"))
    parser.add_argument("--locked-only", action="store_true", help="ignore installed packages the lock does not list")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--drift-ok", action="store_true", help="list the differences as a warning, exit 0")
    mode.add_argument("--missing", action="store_true", help="print NAME==VERSION of each locked package not installed")
    args = parser.parse_args(argv)
    try:
        pins = read_lock(Path(args.lock))
    except (OSError, ValueError) as exc:
        print(f"check_lock: {exc}", file=sys.stderr)
        return 2
    have = installed(venv_only=False)
    if args.missing:
        print("".join(f"{name}=={version}\n" for name, version in sorted(pins.items()) if name not in have), end="")
        return 0
    problems = drift(pins, have, None if args.locked_only else installed(venv_only=True))
    if args.drift_ok:
        if problems:
            print(
                f"check_lock: warning: {len(problems)} difference(s) from {args.lock}, kept on purpose "
                "(the installed stack is used where the lock's version is not available):",
                file=sys.stderr,
            )
            for line in problems:
                print(f"check_lock: warning:   {line}", file=sys.stderr)
        else:
            print(f"check_lock: {sys.prefix} matches {args.lock} ({len(pins)} packages)")
        return 0
    for line in problems:
        print(f"check_lock: {line}", file=sys.stderr)
    if problems:
        print(
            f"check_lock: {len(problems)} difference(s) from {args.lock}: "
            "`rm -rf .venv && make install` for a clean venv, or `make lock` to re-lock",
            file=sys.stderr,
        )
        return 1
    print(f"check_lock: {sys.prefix} matches {args.lock} ({len(pins)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
