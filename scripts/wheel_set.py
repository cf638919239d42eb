"""The wheels an offline machine needs: lorabench's locked dependencies its Python lacks.

    python scripts/wheel_set.py [--image scripts/gpu-image.txt] [--extra test] [--python-version 3.12]

A machine with no package registry (a GPU image with torch and most of the stack
preinstalled) can only get the rest as wheel files carried over. This walks lorabench's
requirements (plus the extra) as pip's resolver will there: through the metadata installed
in *this* environment (a venv made by ``make install``, so at the lock's versions), with
markers evaluated for the target (CPython on Linux x86-64), and through the image's own
packages too; only torch and the CUDA wheels end it. Every package reached that the image
does not list is printed as ``NAME==VERSION`` at the lock's version, one a line, with
lorabench's build requirements (pip builds it there from these wheels too).
``scripts/collect_wheels.sh`` downloads them.

Exit 1 when the image cannot work: a package it has at a version that a wheel we carry
rejects (pip would fail there, with no registry to fix it), or a package that must come
from the image (torch, CUDA wheels) and is not listed. Exit 2 on unusable input.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from check_lock import UNLOCKED, normalise, read_lock
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[1]


def read_image(path: Path) -> dict[str, str | None]:
    """``{normalised name: version or None}`` from a ``pip list --format=freeze``-style file.

    A bare name means "installed, version unknown"; ``#`` starts a comment.
    """
    found: dict[str, str | None] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()) or (sep and not version.strip()):
            raise ValueError(f"{path}:{lineno}: expected NAME or NAME==VERSION, got {raw!r}")
        found[normalise(name.strip())] = version.strip() or None
    return found


def target_markers(python_version: str) -> dict[str, str]:
    """PEP 508 marker values of the target: CPython ``python_version`` on Linux x86-64."""
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "sys_platform": "linux",
        "os_name": "posix",
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
    }


def lorabench_requires(extras: list[str]) -> tuple[list[str], list[str]]:
    """``(requirements with their markers, build requirements)`` of lorabench, from pyproject.toml.

    Read from the file, not the installed metadata, which is only as fresh as the last install.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata, and today's build requirement
        return list(metadata.requires("lorabench") or []), ["setuptools>=77"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    requires = list(project["dependencies"])
    for extra in extras:
        if extra not in project.get("optional-dependencies", {}):
            raise ValueError(f"pyproject.toml: lorabench has no extra {extra!r}")
        for raw in project["optional-dependencies"][extra]:
            spec, _, marker = raw.partition(";")
            requires.append(f"{spec}; ({marker}) and extra == {extra!r}" if marker else f"{spec}; extra == {extra!r}")
    return requires, list(pyproject["build-system"]["requires"])


def wheel_set(
    pins: dict[str, str],
    image: dict[str, str | None],
    extras: list[str],
    python_version: str,
) -> tuple[dict[str, str], list[str]]:
    """``({name: locked version} to carry, [problems])`` for lorabench with ``extras`` on the image.

    pip's resolver also follows the dependencies of the image's packages (an image whose
    typer lacks its pydantic fails the install), so the walk goes on through them too, with
    the lock's metadata, the closest this machine has; only torch and the CUDA wheels, which
    belong to the image, end it. Versions are checked only where our side asks: lorabench
    and the wheels we carry.
    """
    env = target_markers(python_version)
    carry: dict[str, str] = {}
    problems: list[str] = []
    # (requirement, who asked, extras active for that requirement's owner, is the asker ours)
    todo: list[tuple[Requirement, str, set[str], bool]] = []
    requires, build_requires = lorabench_requires(extras)
    for raw in requires:
        todo.append((Requirement(raw), "lorabench", set(extras), True))
    for raw in build_requires:
        todo.append((Requirement(raw), "lorabench's build", set(), True))
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent, parent_extras, ours = todo.pop()
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in (parent_extras or {""})):
            continue
        name = normalise(req.name)
        on_image = name in image and parent != "lorabench's build"  # pip builds in a clean env
        if on_image and ours and image[name] is not None:
            try:
                if not req.specifier.contains(Version(str(image[name])), prereleases=True):
                    problems.append(f"the image has {name} {image[name]}, but {parent} needs {name}{req.specifier}")
            except InvalidVersion:
                problems.append(f"the image lists {name} at an unreadable version {image[name]!r}")
        if UNLOCKED.match(name):
            if not on_image:
                problems.append(f"{name} (needed by {parent}) must come with the image, and it does not list it")
            continue
        if name not in pins:
            if not on_image:
                problems.append(f"{name} (needed by {parent}) is not in the lock")
            continue
        if not on_image:
            carry[name] = pins[name]
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
            here = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed here to read its dependencies: `make install` first")
            continue
        if here != pins[name]:
            problems.append(f"{name} is {here} here, the lock pins {pins[name]}: `make install` first")
        for dep in requires:
            todo.append((Requirement(dep), name, set(req.extras), not on_image))
    return carry, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default=str(REPO / "requirements.lock"))
    parser.add_argument(
        "--image", default=str(REPO / "scripts" / "gpu-image.txt"), help="the packages the target already has"
    )
    parser.add_argument("--extra", action="append", default=None, help="lorabench extras to include (default: test)")
    parser.add_argument("--python-version", default="3.12", help="the target's Python, X.Y")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        print(f"wheel_set: --python-version: expected 3.X, got {args.python_version!r}", file=sys.stderr)
        return 2
    try:
        pins = read_lock(Path(args.lock))
        image = read_image(Path(args.image))
        carry, problems = wheel_set(pins, image, args.extra or ["test"], args.python_version)
    except (OSError, ValueError, InvalidRequirement) as exc:
        print(f"wheel_set: {exc}", file=sys.stderr)
        return 2
    except metadata.PackageNotFoundError:
        print("wheel_set: lorabench is not installed in this Python: run it with .venv/bin/python", file=sys.stderr)
        return 2
    for line in problems:
        print(f"wheel_set: {line}", file=sys.stderr)
    if problems:
        return 1
    for name, version in sorted(carry.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
