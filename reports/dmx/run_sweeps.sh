#!/usr/bin/env bash
# Reproduces the committed dMX Pareto sweeps under reports/dmx/ and SUMMARY.md.
# Usage: reports/dmx/run_sweeps.sh [BUILD_DIR] [JOBS]   (JOBS sweeps at a time, one LibTorch
# thread each; 2 on the 2-core reference machine). Needs the corpus split data/wiki.valid.raw
# (shipped). A killed run resumes: finished points are reused, dMX resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build}/bin
JOBS=${2:-2}
COMMON=(--data data/wiki.valid.raw --eval-data data/wiki.test.raw --steps 400 --lr 20
        --seqlen 128 --calib-windows 64 --eval-windows 256 --kl-windows 16 --seed 0 --threads 1)
# The sweeps SUMMARY.md's confidence intervals come from: three seeds (calibration windows and
# their order), both ladders, the four uniform formats of the ladders.
SEEDED="--budgets 4.5 5.5 6.5 --methods dmx-untied dmx3 kl uniform --loss kd --seeds 0 1 2 --uniform-formats E2M1 E3M2 E2M3 E4M3"
sweeps=(
  "llama-tiny-bits --model models/llama-tiny --budgets 4.5 5.5 6.5 --methods dmx kl uniform"
  "qwen3-tiny-bits --model models/qwen3-tiny --budgets 4.5 5.5 6.5 --methods dmx kl uniform"
  "llama-tiny-sim-edge_npu --model models/llama-tiny --cost-model sim --arch sim/configs/edge_npu.json --metric cycles --phase both --tokens 512 --generate 256 --budgets 0.25 0.5 0.75 --methods dmx kl uniform"
  "qwen3-tiny-variants --model models/qwen3-tiny --budgets 5.5 --methods dmx dmx3 dmx-untied kl uniform"
  "llama-tiny-bits-kd --model models/llama-tiny $SEEDED"
  "qwen3-tiny-bits-kd --model models/qwen3-tiny $SEEDED"
  "smollm2-tiny-bits-kd --model models/smollm2-tiny $SEEDED"
  "llama-tiny-bits-kd-hadamard --model models/llama-tiny --budgets 4.5 5.5 6.5 --methods dmx kl uniform --loss kd --rotate hadamard --rotate-seed 0"
)
run() {
  local name=$1
  shift
  "$BIN"/dmx-search sweep "$@" "${COMMON[@]}" --out "reports/dmx/$name" > "reports/dmx/$name.log" 2>&1 &&
    echo "run_sweeps: $name done" || { echo "run_sweeps: $name FAILED (reports/dmx/$name.log)"; return 1; }
}
mkdir -p reports/dmx
for s in "${sweeps[@]}"; do
  # shellcheck disable=SC2086
  run $s &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
done
wait
python3 reports/dmx/summarize.py > /dev/null
echo "run_sweeps: wrote reports/dmx/SUMMARY.md"
