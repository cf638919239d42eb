"""Lock drift: does this interpreter's environment hold exactly what requirements.lock pins?

    python scripts/check_lock.py [--lock requirements.lock] [--extra ray] [--locked-only] [--drift-ok | --missing]

Fails (exit 1) when a locked package is missing or at another version, and, unless
``--locked-only``, when a package the lock does not list is installed in the venv itself
(packages seen through ``--system-site-packages`` are the user's, not ours). torch,
triton, nvidia-* CUDA wheels, pip and lorabench are never locked: the torch build
belongs to the machine. Standard library only, so it runs before anything is installed.

An optional extra (``pip install lorabench[ray]``) has its own lock beside the base one,
``requirements-ray.lock``: the packages it adds, resolved with the base lock as
constraints (``make lock``). ``--extra ray`` requires it; otherwise an extra lock is all
or nothing: a venv with none of its packages passes, one with any of them must hold all
of them at their pins (so ``make lock-check`` stays exact in a venv that has Ray).

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


def extra_locks(base: Path) -> dict[str, Path]:
    """``{extra: path}`` of the extras' locks beside ``base`` (``requirements-NAME.lock``)."""
    stem = base.name.removesuffix(".lock")
    return {p.name[len(stem) + 1 : -len(".lock")]: p for p in sorted(base.parent.glob(f"{stem}-*.lock"))}


def with_extras(
    pins: dict[str, str], extras: dict[str, dict[str, str]], required: list[str], have: dict[str, str]
) -> dict[str, str]:
    """The base pins plus each required extra's, and each optional extra's of which anything is installed."""
    merged = dict(pins)
    for name, extra in extras.items():
        if name in required or any(pkg in have for pkg in extra):
            merged.update(extra)
    return merged


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
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME",
        help="require the extra's lock too (requirements-NAME.lock beside --lock); repeat or comma-separate",
    )
    parser.add_argument("--locked-only", action="store_true", help="ignore installed packages the lock does not list")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--drift-ok", action="store_true", help="list the differences as a warning, exit 0")
    mode.add_argument("--missing", action="store_true", help="print NAME==VERSION of each locked package not installed")
    args = parser.parse_args(argv)
    base = Path(args.lock)
    required = [name for arg in args.extra for name in arg.replace(",", " ").split()]
    try:
        pins = read_lock(base)
        paths = extra_locks(base)
        unknown = [name for name in required if name not in paths]
        if unknown:
            raise ValueError(
                f"no lock for extra {', '.join(unknown)} beside {base} "
                f"(expected {base.parent / f'{base.stem}-{unknown[0]}.lock'}; `make lock` writes one per locked extra)"
            )
        extras = {name: read_lock(path) for name, path in paths.items()}
        for name, extra in extras.items():
            twice = sorted(set(extra) & set(pins))
            if twice:
                raise ValueError(f"{paths[name]}: {', '.join(twice)} is pinned in {base} too")
    except (OSError, ValueError) as exc:
        print(f"check_lock: {exc}", file=sys.stderr)
        return 2
    have = installed(venv_only=False)
    pins = with_extras(pins, extras, required, have)
    lock_name = " + ".join([str(base)] + [str(paths[n]) for n in extras if set(extras[n]) <= set(pins)])
    if args.missing:
        print("".join(f"{name}=={version}\n" for name, version in sorted(pins.items()) if name not in have), end="")
        return 0
    problems = drift(pins, have, None if args.locked_only else installed(venv_only=True))
    if args.drift_ok:
        if problems:
            print(
                f"check_lock: warning: {len(problems)} difference(s) from {lock_name}, kept on purpose "
                "(the installed stack is used where the lock's version is not available):",
                file=sys.stderr,
            )
            for line in problems:
                print(f"check_lock: warning:   {line}", file=sys.stderr)
        else:
            print(f"check_lock: {sys.prefix} matches {lock_name} ({len(pins)} packages)")
        return 0
    for line in problems:
        print(f"check_lock: {line}", file=sys.stderr)
    if problems:
        print(
            f"check_lock: {len(problems)} difference(s) from {lock_name}: "
            f"`rm -rf .venv && make install{' EXTRAS=' + ','.join(required) if required else ''}` for a clean venv, "
            "or `make lock` to re-lock",
            file=sys.stderr,
        )
        return 1
    print(f"check_lock: {sys.prefix} matches {lock_name} ({len(pins)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
