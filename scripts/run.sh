#!/usr/bin/env bash
# The main job: installs what is missing and builds (scripts/setup.sh), then runs dmx-search with
# the simulator cost model: a per-layer MX format assignment for a shipped model under a cycle
# budget on a shipped accelerator config (sim/configs/edge_npu.json), plus the golden CLI demo.
# The budget is on the whole model's cost for one request: a 512-token prompt (prefill) plus 256
# generated tokens (decode), attention, lm_head and KV cache included. The search runs the
# configuration the committed reports support best (reports/dmx/SUMMARY.md, README "Which dMX
# configuration"): distillation loss (--loss kd) with untied weight and activation offsets.
# Environment: DMX_MODEL (a model directory; default: the first of models/*/ with a config.json),
# DMX_ARCH, DMX_BUDGET (fraction of the all-MXFP4..all-MXFP8 cycle range), DMX_STEPS, DMX_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
B=build/bin

echo "== golden: quantize a block to MXFP4, dot MXFP8 x MXFP4 exactly and blocked"
$B/dmx-mx quantize -f mxfp4 --pad 0.1 -0.7 1.3 2.9 -5.5 6.2 0.02 3.3
$B/dmx-mx dot --pad --a-format e4m3 --a-values "0.1 -0.7 1.3 2.9 -5.5 6.2 0.02 3.3" \
  --b-format e2m1 --b-values "1 -0.5 6 0.25 2 -3 1.5 4"

MODEL=${DMX_MODEL:-}
if [ -z "$MODEL" ]; then
  for d in models/*/; do
    if [ -f "$d/config.json" ]; then MODEL=${d%/}; break; fi
  done
fi
if [ -z "$MODEL" ] || [ ! -f "$MODEL/config.json" ]; then
  echo "run.sh: no shipped model found under models/ (set DMX_MODEL=DIR)" >&2
  exit 1
fi
# Calibration text: the corpus's training split, rebuilt from Debian packages (not shipped).
TRAIN=data/wiki.train.raw
if [ ! -s "$TRAIN" ]; then
  echo "== building the training split of the corpus (data/make_corpus.py)"
  mkdir -p build/corpus && python3 data/make_corpus.py --out build/corpus
  TRAIN=build/corpus/wiki.train.raw
fi
ARCH=${DMX_ARCH:-sim/configs/edge_npu.json}
OUT=${DMX_OUT:-out/dmx-search/$(basename "$MODEL")}
echo "== dmx-search --cost-model sim on $MODEL with $ARCH (cycles of a 512-token prompt + 256 generated tokens)"
$B/dmx-search --model "$MODEL" --data "$TRAIN" --eval-data data/wiki.test.raw \
  --cost-model sim --arch "$ARCH" --metric cycles --phase both --tokens 512 --generate 256 \
  --budget "${DMX_BUDGET:-0.5}" --steps "${DMX_STEPS:-120}" --lr 20 --seqlen 128 --calib-windows 64 \
  --eval-windows 24 --batch 1 --seed 0 --loss kd --untied --fresh --out "$OUT"
echo "== layer assignment ($OUT/assignment.json) and metrics ($OUT/metrics.json)"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
a = json.load(open(out + "/assignment.json"))
m = json.load(open(out + "/metrics.json"))
for l in a["layers"]:
    print(f'  {l["layer"]:<40} W {l["weight_format"]:<5} A {l["act_format"]:<5} {l["cost"]:.0f} {a["cost_unit"]}')
print(f'perplexity {m["perplexity"]:.3f}  avg bits {m["achieved_bits"]:.3f}  '
      f'cost {m["achieved_cost"]:.0f} {m["cost_unit"]} ({100*m["cost_fraction"]:.1f}% of the MXFP4..MXFP8 range, '
      f'budget {m["budget"]})  {m["steps_per_s"]:.2f} steps/s  {m["wall_seconds"]:.0f} s')
b = m.get("baselines", {})
if b:  # what the search bought, on the same evaluation windows
    print("same windows: FP32 " + f'{b["fp32"]:.3f}' + "".join(
        f'  uniform {f} {b["uniform_" + f]:.3f}' for f in ("E2M1", "E3M2", "E2M3", "E4M3")
        if "uniform_" + f in b))
if "saving_vs_all_high" in m:
    print(f'whole model, one request: {m["achieved_cost"]:.0f} {m["cost_unit"]} against '
          f'{m["cost_all_high"]:.0f} for all-MXFP8 ({100*m["saving_vs_all_high"]:.1f}% saved; '
          f'{m["fixed_cost"]:.0f} of it is attention, lm_head, embeddings and KV cache at fixed formats)')
PY
