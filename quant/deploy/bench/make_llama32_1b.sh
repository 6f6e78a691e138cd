#!/usr/bin/env bash
# A Llama-3.2-1B-shaped checkpoint with random weights (BF16, ~2.5 GB; never committed): the
# published meta-llama/Llama-3.2-1B config.json, N(0, 0.02^2) weights, the real Llama 3 tokenizer
# (extracted into the build tree at configure time).
#   quant/deploy/bench/make_llama32_1b.sh BUILD_DIR OUT_DIR [SEED]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR [SEED]" >&2
  exit 2
fi
build=$1 out=$2 seed=${3:-0}
tok=$build/tests/quant/tokenizers/llama3_tokenizer.json
[ -x "$build/bin/dmx-random-model" ] || { echo "$0: $build/bin/dmx-random-model: not built" >&2; exit 1; }
[ -f "$tok" ] || { echo "$0: $tok: missing (configure the build with quant/ enabled)" >&2; exit 1; }
# The published config, kept once in the repository (the simulator's tests cost the same model).
cfg=$(cd "$(dirname "$0")/../../.." && pwd)/tests/sim/data/llama-3.2-1b.json
"$build/bin/dmx-random-model" --config "$cfg" --out "$out" --seed "$seed" --tokenizer "$tok"
