#!/usr/bin/env bash
# A second venv (`make test-drift`) with the GPU image's versions of the libraries whose API
# lorabench calls (PACKAGES, versions from scripts/gpu-image.txt), installed over the lock
# with pip resolving what they need. torch stays the machine's (the image's is a CUDA
# build) and numpy the lock's (the image's 2.5 needs Python 3.12). Tests run there catch
# an API drift before GPU time is spent on it.
#   VENV=.venv-drift IMAGE=scripts/gpu-image.txt PACKAGES="transformers peft" scripts/drift_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-drift}
IMAGE=${IMAGE:-scripts/gpu-image.txt}

if [ -e "$VENV" ]; then
  echo "drift_venv: $VENV exists: the image's versions go into a fresh venv (remove it first; make test-drift does)" >&2
  exit 2
fi
PACKAGES=${PACKAGES:-transformers peft accelerate tokenizers huggingface_hub safetensors}
pins=()
for name in $PACKAGES; do
  pin=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$IMAGE" | grep -i "^${name}==" || true)
  if [ -z "$pin" ]; then
    echo "drift_venv: $IMAGE gives no version for $name (NAME==VERSION)" >&2
    exit 2
  fi
  pins+=("$pin")
done
VENV="$VENV" bash scripts/bootstrap.sh
torch_pin="torch==$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
echo "drift_venv: installing the image's versions over the lock: ${pins[*]} ($torch_pin kept)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c <(echo "$torch_pin") "${pins[@]}"
"$VENV/bin/python" -m pip check --disable-pip-version-check
"$VENV/bin/python" scripts/check_lock.py --drift-ok 2>&1 | tee "$VENV/lock-drift.txt" >&2
