#!/usr/bin/env bash
# Download the wheels that `make install WHEELS=.whl` needs on a machine with no package
# registry whose Python already has torch and most of the stack (a GPU image): lorabench's
# locked dependencies (the `test` extra included) that the image lacks, at the lock's
# versions, for CPython 3.12 on x86-64 manylinux. Run it here, with a registry, after
# `make install`; carry the directory over next to the clone.
#   scripts/collect_wheels.sh                           (`make wheels`; into .whl/)
#   IMAGE=image.txt scripts/collect_wheels.sh           (the image's `python3 -m pip list --format=freeze`)
#   WHEELS=DIR TARGET_PYTHON=3.11 scripts/collect_wheels.sh
# What to carry is decided by scripts/wheel_set.py (it fails when a carried package would
# reject a version the image has). Packages published only as an sdist (rouge-score) are
# built here into wheels, which must be pure Python to fit the target.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=${WHEELS:-.whl}
IMAGE=${IMAGE:-scripts/gpu-image.txt}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}

if [ ! -x "$PY" ]; then
  echo "collect_wheels: $PY not found: run \`make install\` first (the wheel set is read from its metadata)" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" scripts/wheel_set.py --image "$IMAGE" --python-version "$TARGET_PYTHON" > "$tmp/set.txt"
mkdir -p "$DEST"
abi="cp${TARGET_PYTHON/./}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
  manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
PIP=("$PY" -m pip --disable-pip-version-check)
echo "collect_wheels: $(wc -l < "$tmp/set.txt") wheels for CPython $TARGET_PYTHON x86-64 into $DEST/ ($IMAGE lists what the image has)"
while read -r pin; do
  if "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" \
    --implementation cp --abi "$abi" --abi abi3 --abi none "${platforms[@]}" -d "$DEST" "$pin" 2> "$tmp/err"; then
    continue
  fi
  # No wheel for the target: build one from the sdist, and keep it only if it is pure Python.
  rm -rf "$tmp/built"
  if ! "${PIP[@]}" wheel -q --no-deps -w "$tmp/built" "$pin" 2>> "$tmp/err"; then
    cat "$tmp/err" >&2
    echo "collect_wheels: $pin: no wheel for CPython $TARGET_PYTHON x86-64 and none could be built (above)" >&2
    exit 1
  fi
  for whl in "$tmp/built"/*.whl; do
    case "$whl" in
      *-none-any.whl) mv "$whl" "$DEST/"; echo "collect_wheels: built $(basename "$whl") from the sdist" ;;
      *) echo "collect_wheels: $pin: built $(basename "$whl"), which is not pure Python: it cannot be carried" >&2; exit 1 ;;
    esac
  done
done < "$tmp/set.txt"
# Wheels left from an older lock or image are not installed (pip takes the pinned ones), but are carried.
stale=()
for whl in "$DEST"/*.whl; do
  name=$(basename "$whl" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
  version=$(basename "$whl" | cut -d- -f2)
  grep -qx "$name==$version" "$tmp/set.txt" || stale+=("$(basename "$whl")")
done
if [ "${#stale[@]}" -gt 0 ]; then
  echo "collect_wheels: not in today's set (delete them to carry less): ${stale[*]}" >&2
fi
echo "collect_wheels: $(find "$DEST" -type f -name '*.whl' | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST/"
