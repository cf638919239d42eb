#!/usr/bin/env bash
# Everything lorabench measures on a CUDA machine, in stages that a time-boxed machine can
# split across several calls (each stage resumes or is quick to redo):
#
#   scripts/gpu_bench.sh OUT [STAGE ...]        e.g. scripts/gpu_bench.sh results/gpu-h100 env tests smoke
#
# Stages, in the default order (all of them when none is named):
#   env        lorabench's environment record, nvidia-smi, the Python packages (OUT/env.json, OUT/env.txt)
#   tests      the gpu-marked tests and the CPU-side guards of what the GPU relies on
#   smoke      suites/smoke.yaml on the GPU                      -> OUT/smoke
#   llama1b    suites/gpu_llama1b.yaml (full/LoRA/int8/QLoRA)    -> OUT/llama1b
#   falcon7b   suites/gpu_falcon7b.yaml (QLoRA r16/r64, LoRA)    -> OUT/falcon7b
#   llama7b    suites/gpu_llama7b.yaml (LoRA/int8/QLoRA)         -> OUT/llama7b
#   load       weights: random load time, 1B and 7B, bf16/int8/nf4 -> OUT/load_*.jsonl
#   isolation  a run's process start-up, broken down             -> OUT/isolation.txt
#   perf       harness overhead vs a bare loop at 7B (LoRA bf16) -> OUT/perf_llama7b.txt
#   estimate   the memory estimate against max_memory_allocated  -> OUT/estimate_vs_measured/
#
# Each stage logs to OUT/logs/STAGE.log and appends "STAGE<TAB>exit code<TAB>seconds" to
# OUT/stages.tsv; a failing stage does not stop the next. Adapters are deleted (records,
# leaderboards, reports and plots stay). Set PY to the interpreter holding lorabench
# (default .venv/bin/python); ESTIMATE_ONLY narrows the estimate grid (its --only).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
OUT=$1
shift
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(env tests smoke llama1b falcon7b llama7b load isolation perf estimate)
PY=${PY:-.venv/bin/python}
if ! "$PY" -c 'import lorabench' 2>/dev/null; then
  echo "gpu_bench: $PY cannot import lorabench; run 'make install' first or set PY" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$OUT/logs"
LB=("$PY" -m lorabench)

suite() {  # suite NAME DIR: run (resuming), then drop the adapters
  "${LB[@]}" run "suites/$1.yaml" --out "$OUT/$2" --no-progress --strict
  local rc=$?
  rm -rf "$OUT/$2"/runs/*/adapter
  return $rc
}

stage() {
  case $1 in
    env)
      "${LB[@]}" env --json > "$OUT/env.json" || return 1
      { nvidia-smi || true; "$PY" -m pip list 2>/dev/null; } > "$OUT/env.txt"
      cat "$OUT/env.json" ;;
    tests)
      "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_perf.py &&
        "$PY" -m pytest -q -p no:cacheprovider tests/test_isolation_guard.py tests/test_bnb_cpu.py tests/test_profile.py ;;
    smoke) suite smoke smoke ;;
    llama1b) suite gpu_llama1b llama1b ;;
    falcon7b) suite gpu_falcon7b falcon7b ;;
    llama7b) suite gpu_llama7b llama7b ;;
    load)
      "$PY" benchmarks/random_weights_load.py config:llama-1b bf16 int8 nf4 | tee "$OUT/load_llama1b.jsonl" &&
        "$PY" benchmarks/random_weights_load.py config:llama-7b bf16 int8 nf4 | tee "$OUT/load_llama7b.jsonl" ;;
    isolation) "$PY" benchmarks/isolation_overhead.py | tee "$OUT/isolation.txt" ;;
    perf)
      "$PY" benchmarks/perf_overhead.py --shape llama-7b --device cuda --precision bf16 --method lora --rank 16 \
        --target-modules all-linear --batch-size 4 --seq-len 512 --reps 4 | tee "$OUT/perf_llama7b.txt" ;;
    estimate)
      "$PY" benchmarks/estimate_vs_measured.py --device cuda --out "$OUT/estimate_vs_measured" \
        ${ESTIMATE_ONLY:+--only "$ESTIMATE_ONLY"} ;;
    *) echo "gpu_bench: unknown stage '$1' (see the header of $0)" >&2; return 2 ;;
  esac
}

status=0
for s in "${STAGES[@]}"; do
  t0=$(date +%s)
  echo "== $s ($(date -u +%H:%M:%S))"
  stage "$s" 2>&1 | tee "$OUT/logs/$s.log"
  rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$s" "$rc" "$(( $(date +%s) - t0 ))" | tee -a "$OUT/stages.tsv"
  [ "$rc" -ne 0 ] && status=1
done
exit $status
