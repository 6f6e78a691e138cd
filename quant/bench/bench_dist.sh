#!/usr/bin/env bash
# Scaling of the distributed tools on this machine, 1 thread per process, the 1-rank and 2-rank
# runs of each tool in this one invocation (alternating, REPS times):
#   dmx-search (dMX on models/llama-tiny, global batch 8 x 128 tokens): steps/s of the search loop
#   dmx-eval   (llama-tiny, 128-token windows of data/wiki.test.raw): tokens/s of the evaluation
# Each rep also runs two independent single-process runs of half the work at once (no
# communication): the machine's own 2-process scaling, the ceiling of any 2-rank run here.
# Prints the command, commit, CPU and load average first, then one line per run and the ratios.
# It waits (up to WAIT seconds in all, default 600) for the 1-minute load to fall below MAX_LOAD
# (0.6) before measuring, and before every run for the other processes to use less than MAX_BUSY
# cores (0.15, sampled over 2 s from /proc/stat); each run's line shows what they used just
# before and just after it (the machine is shared: a run that overlapped a busy spell shows it).
#   quant/bench/bench_dist.sh [BUILD_DIR]     env: REPS (2), STEPS (20), WINDOWS (240), WAIT, MAX_LOAD
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
BIN=$BUILD/bin
REPS=${REPS:-2}
STEPS=${STEPS:-20}
WINDOWS=${WINDOWS:-240}
WAIT=${WAIT:-600}
MAX_LOAD=${MAX_LOAD:-0.6}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
waited=0
while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }' && [ $waited -lt "$WAIT" ]; do
  sleep 10
  waited=$((waited + 10))
done
echo "command: $0 $* (REPS=$REPS STEPS=$STEPS WINDOWS=$WINDOWS)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (waited ${waited} s for < $MAX_LOAD)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"

SEARCH0=("$BIN/dmx-search" --model models/llama-tiny --data data/wiki.valid.raw --method dmx
  --budget 5.5 --lr 20 --steps "$STEPS" --seqlen 128 --calib-windows 64 --eval-windows 4
  --threads 1 --seed 0)
SEARCH=("${SEARCH0[@]}" --batch 8)
EVAL0=("$BIN/dmx-eval" --model models/llama-tiny --data data/wiki.test.raw --seqlen 128 --threads 1
  --quiet)
EVAL=("${EVAL0[@]}" --max-windows "$WINDOWS")
echo "search: ${SEARCH[*]} --out DIR   (2 ranks: scripts/dmx-launch.sh -n 2 -- ...)"
echo "eval:   ${EVAL[*]} --out FILE"
echo "indep:  the machine's own 2-process scaling: two single-process runs of half the work each"
echo "        (--batch 4, --max-windows $((WINDOWS / 2))) started together, no communication"

# CPU time used by anything on the machine over 2 s, in cores (from /proc/stat): between runs
# this is the other processes' load (the 1-minute load average still holds our previous run).
busy() {
  read -r _ u n s i w q sq st _ </proc/stat
  local t0=$((u + n + s + q + sq + st)) i0=$((i + w))
  sleep 2
  read -r _ u n s i w q sq st _ </proc/stat
  local t1=$((u + n + s + q + sq + st)) i1=$((i + w))
  awk -v b=$((t1 - t0)) -v a=$((t1 - t0 + i1 - i0)) -v c="$(nproc)" 'BEGIN { printf "%.2f", c * b / a }'
}
# Waits (up to WAIT seconds in all) until the other processes use less than MAX_BUSY cores.
MAX_BUSY=${MAX_BUSY:-0.15}
quiet() {  # sets b
  b=$(busy)
  while awk -v b="$b" -v m="$MAX_BUSY" 'BEGIN { exit !(b >= m) }' && [ $waited -lt "$WAIT" ]; do
    sleep 3
    waited=$((waited + 5))
    b=$(busy)
  done
}
value() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
s1=() s2=() e1=() e2=() si=() ei=()
for rep in $(seq "$REPS"); do
  for n in 1 2; do
    rm -rf "$T/s"
    quiet
    scripts/dmx-launch.sh -n $n -- "${SEARCH[@]}" --out "$T/s" 2>"$T/log" || { tail -3 "$T/log"; exit 1; }
    v=$(value "$T/s/metrics.json" steps_per_s)
    echo "search rep $rep ranks $n: $v steps/s (other processes before: $b cores; after: $(busy))"
    if [ $n -eq 1 ]; then s1+=("$v"); else s2+=("$v"); fi
    quiet
    scripts/dmx-launch.sh -n $n -- "${EVAL[@]}" --out "$T/e.json" >/dev/null 2>"$T/log" || { tail -3 "$T/log"; exit 1; }
    v=$(value "$T/e.json" tokens_per_second)
    echo "eval   rep $rep ranks $n: $v tokens/s (other processes before: $b cores; after: $(busy))"
    if [ $n -eq 1 ]; then e1+=("$v"); else e2+=("$v"); fi
  done
  quiet
  rm -rf "$T/a" "$T/b"
  "${SEARCH0[@]}" --batch 4 --out "$T/a" 2>"$T/loga" &
  pa=$!
  "${SEARCH0[@]}" --batch 4 --out "$T/b" 2>"$T/logb" || { tail -3 "$T/logb"; exit 1; }
  wait $pa || { tail -3 "$T/loga"; exit 1; }
  v=$(python3 -c 'import json, sys; print(min(json.load(open(f))["steps_per_s"] for f in sys.argv[1:]))' "$T/a/metrics.json" "$T/b/metrics.json")
  echo "search rep $rep 2 independent half runs: $v steps/s (the slower; other processes before: $b cores)"
  si+=("$v")
  quiet
  "${EVAL0[@]}" --max-windows $((WINDOWS / 2)) --out "$T/ea.json" >/dev/null 2>"$T/loga" &
  pa=$!
  "${EVAL0[@]}" --max-windows $((WINDOWS / 2)) --out "$T/eb.json" >/dev/null 2>"$T/logb" || { tail -3 "$T/logb"; exit 1; }
  wait $pa || { tail -3 "$T/loga"; exit 1; }
  v=$(python3 -c 'import json, sys; r = [json.load(open(f)) for f in sys.argv[1:]]; print(sum(x["windows"] * x["seqlen"] for x in r) / max(x["seconds"] for x in r))' "$T/ea.json" "$T/eb.json")
  echo "eval   rep $rep 2 independent half runs: $v tokens/s (both together; other processes before: $b cores)"
  ei+=("$v")
done
python3 - "${s1[*]}" "${s2[*]}" "${e1[*]}" "${e2[*]}" "${si[*]}" "${ei[*]}" <<'EOF'
import sys, statistics as st
s1, s2, e1, e2, si, ei = ([float(x) for x in a.split()] for a in sys.argv[1:7])
print(f"dmx-search 2 ranks / 1 rank: {st.median(s2) / st.median(s1):.3f}x steps/s "
      f"(medians {st.median(s1):.4g} / {st.median(s2):.4g}; per rep: "
      + ", ".join(f"{b / a:.3f}" for a, b in zip(s1, s2)) + ")")
print(f"dmx-eval   2 ranks / 1 rank: {st.median(e2) / st.median(e1):.3f}x tokens/s "
      f"(medians {st.median(e1):.5g} / {st.median(e2):.5g}; per rep: "
      + ", ".join(f"{b / a:.3f}" for a, b in zip(e1, e2)) + ")")
print(f"machine, 2 independent processes / 1: search {st.median(si) / st.median(s1):.3f}x, "
      f"eval {st.median(ei) / st.median(e1):.3f}x (per rep: search "
      + ", ".join(f"{b / a:.3f}" for a, b in zip(s1, si)) + "; eval "
      + ", ".join(f"{b / a:.3f}" for a, b in zip(e1, ei)) + ")")
print(f"2 ranks / 2 independent processes (the cost of the communication): search "
      f"{st.median(s2) / st.median(si):.3f}, eval {st.median(e2) / st.median(ei):.3f}")
EOF
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); waited ${waited} s in all for quiet spells"
