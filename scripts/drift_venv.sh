#!/usr/bin/env bash
# A second venv (`make test-drift`) with the GPU image's versions of the libraries that
# shape a run: every NAME==VERSION in scripts/gpu-image.txt but torch (the image's is a
# CUDA build; this keeps the machine's torch), installed over the lock with pip resolving
# what they need. Tests run there catch an API drift before GPU time is spent on it.
#   VENV=.venv-drift IMAGE=scripts/gpu-image.txt scripts/drift_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-drift}
IMAGE=${IMAGE:-scripts/gpu-image.txt}

if [ -e "$VENV" ]; then
  echo "drift_venv: $VENV exists: the image's versions go into a fresh venv (remove it first; make test-drift does)" >&2
  exit 2
fi
VENV="$VENV" bash scripts/bootstrap.sh
pins=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$IMAGE" | grep '==' | grep -iv '^torch==' || true)
if [ -z "$pins" ]; then
  echo "drift_venv: $IMAGE pins no version (NAME==VERSION) other than torch: nothing to test against" >&2
  exit 2
fi
torch_pin="torch==$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
echo "drift_venv: installing the image's versions over the lock: $(echo $pins) ($torch_pin kept)"
# shellcheck disable=SC2086  # one argument per pin
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c <(echo "$torch_pin") $pins
"$VENV/bin/python" -m pip check --disable-pip-version-check
"$VENV/bin/python" scripts/check_lock.py --drift-ok 2>&1 | tee "$VENV/lock-drift.txt" >&2
