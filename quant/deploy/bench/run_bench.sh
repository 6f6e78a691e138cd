#!/usr/bin/env bash
# Decode and prefill tokens/s, peak RSS and checkpoint size: the kernel backend (packed-MX
# checkpoints written by dmx-export) against LibTorch FP32 (the original checkpoint), per model and
# assignment. Every configuration runs in its own dmx-generate process (peak RSS is per process);
# the configurations of one model alternate within each repetition and the report gives medians and
# the ratios of medians from this one run (the development VM is shared: compare ratios, not times
# across reports).
#   quant/deploy/bench/run_bench.sh BUILD_DIR OUT_PREFIX REPS MODEL_DIR [MODEL_DIR...]
# Assignments per model: all-MXFP4 (E2M1 weights and activations), all-MXFP8 (E4M3), and a mix:
# reports/dmx/<model>-bits/runs/dmx_5.5/assignment.json for a shipped model; for any other model
# (e.g. the Llama-3.2-1B-shaped one of make_llama32_1b.sh) llama-tiny's searched 5.5-bit assignment
# tiled over its layers (layer i takes llama-tiny layer floor(i * 4 / L)).
# Writes OUT_PREFIX.json (every run) and OUT_PREFIX.md (the table).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 BUILD_DIR OUT_PREFIX REPS MODEL_DIR [MODEL_DIR...]" >&2
  exit 2
fi
build=$1 prefix=$2 reps=$3
shift 3
repo=$(cd "$(dirname "$0")/../../.." && pwd)
bin=$build/bin
threads=${DMX_BENCH_THREADS:-2}
decode_new=${DMX_BENCH_DECODE_TOKENS:-16}
prefill_tokens=${DMX_BENCH_PREFILL_TOKENS:-512}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 40000 "$repo/data/wiki.test.raw" > "$work/prompt.txt"
runs=$prefix.runs.jsonl
: > "$runs"

for model in "$@"; do
  name=$(basename "$model")
  cfg_dir=$work/$name
  mkdir -p "$cfg_dir"
  mix=$repo/reports/dmx/$name-bits/runs/dmx_5.5/assignment.json
  mix_label="dmx 5.5 (searched)"
  if [ ! -f "$mix" ]; then
    mix=$cfg_dir/mix.json
    mix_label="dmx 5.5 (llama-tiny's, tiled)"
    python3 "$repo/quant/deploy/bench/tile_assignment.py" \
      "$repo/reports/dmx/llama-tiny-bits/runs/dmx_5.5/assignment.json" "$model/config.json" "$mix"
  fi
  "$bin/dmx-export" --model "$model" --format e2m1 --out "$cfg_dir/mxfp4" --quiet
  "$bin/dmx-export" --model "$model" --format e4m3 --out "$cfg_dir/mxfp8" --quiet
  "$bin/dmx-export" --model "$model" --assignment "$mix" --out "$cfg_dir/mix" --quiet
  configs=("fp32|LibTorch FP32|$model|torch" "mxfp4|all-MXFP4|$cfg_dir/mxfp4|kernels"
           "mxfp8|all-MXFP8|$cfg_dir/mxfp8|kernels" "mix|$mix_label|$cfg_dir/mix|kernels")
  for ((rep = 0; rep < reps; ++rep)); do
    for c in "${configs[@]}"; do
      IFS='|' read -r key label dir backend <<< "$c"
      for mode in decode prefill; do
        if [ "$mode" = decode ]; then
          args=(--prompt "The history of the city" --max-new-tokens "$decode_new")
        else
          args=(--prompt-file "$work/prompt.txt" --max-prompt-tokens "$prefill_tokens" --max-new-tokens 1)
        fi
        "$bin/dmx-generate" --model "$dir" --backend "$backend" --threads "$threads" --ignore-eos \
          --ids --quiet --out "$work/r.json" "${args[@]}" > /dev/null
        size=$(stat -c %s "$dir/model.safetensors")
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.update(model=sys.argv[2], key=sys.argv[3], label=sys.argv[4], mode=sys.argv[5], rep=int(sys.argv[6]), file_bytes=int(sys.argv[7])); print(json.dumps(r))' \
          "$work/r.json" "$name" "$key" "$label" "$mode" "$rep" "$size" >> "$runs"
        echo "$name $key $mode rep $rep done" >&2
      done
    done
  done
done

python3 - "$runs" "$prefix" "$threads" "$decode_new" "$prefill_tokens" <<'PY'
import json, statistics, sys, platform, subprocess
runs = [json.loads(l) for l in open(sys.argv[1])]
prefix, threads, dn, pt = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
json.dump(runs, open(prefix + ".json", "w"), indent=1)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
models = list(dict.fromkeys(r["model"] for r in runs))
lines = [f"# Kernel backend vs LibTorch FP32 (quant/deploy/bench/run_bench.sh)", "",
         f"CPU: {cpu}; {threads} threads; decode: {dn} new tokens after the prompt 'The history of the city'; prefill: "
         f"{pt} prompt tokens. Medians over {max(r['rep'] for r in runs) + 1} repetition(s), one "
         "process per run; ratios are kernel / FP32 medians from this run. Peak RSS: VmHWM of the "
         "generating process (includes loading). File: model.safetensors bytes.", "",
         "| model | assignment | decode tok/s | x FP32 | prefill tok/s | x FP32 | peak RSS MiB (decode run) | % of FP32 | file MB |",
         "|---|---|---|---|---|---|---|---|---|"]
for m in models:
    rs = [r for r in runs if r["model"] == m]
    keys = list(dict.fromkeys(r["key"] for r in rs))
    def med(key, mode, field):
        v = [r[field] for r in rs if r["key"] == key and r["mode"] == mode]
        return statistics.median(v) if v else float("nan")
    base_d, base_p = med("fp32", "decode", "decode_tokens_per_s"), med("fp32", "prefill", "prefill_tokens_per_s")
    base_rss = med("fp32", "decode", "peak_rss_bytes")
    for k in keys:
        label = next(r["label"] for r in rs if r["key"] == k)
        d, p = med(k, "decode", "decode_tokens_per_s"), med(k, "prefill", "prefill_tokens_per_s")
        rss = med(k, "decode", "peak_rss_bytes")
        fb = next(r["file_bytes"] for r in rs if r["key"] == k)
        lines.append(f"| {m} | {label} | {d:.2f} | {d / base_d:.2f} | {p:.1f} | {p / base_p:.2f} | "
                     f"{rss / 2**20:.0f} | {100 * rss / base_rss:.0f}% | {fb / 1e6:.1f} |")
open(prefix + ".md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
