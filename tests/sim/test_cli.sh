#!/usr/bin/env bash
# dmx-sim from the command line: whole-model tables and totals, topology files, refused inputs
# (one-line error, exit 2, no output file, no hang), and sweeps that reuse a finished point only
# when every setting matches. Usage: test_cli.sh path/to/dmx-sim SOURCE_DIR
set -uo pipefail
SIM=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
EDGE=$SRC/sim/configs/edge_npu.json
LLAMA=$SRC/tests/sim/data/llama-3.2-1b.json

# Whole-model tables: prefill, decode at batch 1 and 8; 36 pairs each in the totals.
if "$SIM" model --config "$LLAMA" --arch "$EDGE" --tokens 256 --context 512 --batch 1,8 \
  -o "$T/table.csv" --totals "$T/totals.csv" --json "$T/table.json" >"$T/summary.txt" 2>"$T/err"; then
  n=$(($(wc -l <"$T/totals.csv") - 1))
  [ "$n" -eq 108 ] && ok "totals: 3 phases x 36 pairs" || bad "totals has $n rows, want 108"
  grep -q '^2,llama,decode,0,512,8,.*,lm_head,lm_head,lm_head,8,128256,2048,1,E4M3,E4M3' "$T/table.csv" &&
    ok "lm_head row at batch 8" || bad "no decode lm_head row at batch 8"
  grep -q 'E4M3 x E4M3' "$T/summary.txt" && ok "summary printed" || bad "no summary"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['version']==2 and len(j['totals'])==108" \
    "$T/table.json" && ok "JSON table" || bad "JSON table"
else
  bad "model run failed: $(cat "$T/err")"
fi

# Refused inputs: exit 2, a one-line message naming the input, no output file.
refused() {  # name, expected text, command...
  local name=$1 want=$2
  shift 2
  rm -f "$T/out.csv"
  timeout 10 "$@" >"$T/o" 2>"$T/e"
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$want" "$T/e" && [ "$(wc -l <"$T/e")" -eq 1 ] && [ ! -e "$T/out.csv" ]; then
    ok "$name"
  else
    bad "$name (rc $rc, stderr: $(head -c 300 "$T/e"))"
  fi
}
printf '{"model_type":"mixtral","num_local_experts":8,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}' >"$T/moe.json"
refused "MoE config" "mixture-of-experts" "$SIM" model --config "$T/moe.json" --arch "$EDGE" -o "$T/out.csv"
refused "gemm --m 0 blames the shape" "GEMM shape m=0" "$SIM" gemm --m 0 --n 8 --k 32 --arch "$EDGE"
refused "missing output directory, before the work" "its directory does not exist" \
  "$SIM" model --config "$LLAMA" --arch "$EDGE" -o /nonexistent/out.csv
refused "gemm 1e5 cubed: bounded" "SRAM tiles" "$SIM" gemm --m 100000 --n 100000 --k 100000 --arch "$EDGE"
printf '{"dram":{"gbps":1e-300}}' >"$T/slow.json"
refused "dram.gbps 1e-300" "dram.gbps" "$SIM" gemm --m 8 --n 8 --k 32 --arch "$T/slow.json"
mkfifo "$T/fifo"
refused "FIFO as --arch" "not a regular file" "$SIM" model --config "$LLAMA" --arch "$T/fifo" -o "$T/out.csv"
refused "bad phase" "--phase" "$SIM" model --config "$LLAMA" --arch "$EDGE" --phase both2 -o "$T/out.csv"
refused "bad batch" "--batch" "$SIM" model --config "$LLAMA" --arch "$EDGE" --batch 1,x -o "$T/out.csv"
refused "two workloads" "exactly one workload" \
  "$SIM" model --config "$LLAMA" --topology "$T/x.csv" --arch "$EDGE" -o "$T/out.csv"

# A topology file.
printf 'name,m,n,k,count\nconv,3136,64,147,1\nfc,1,1000,2048,2\n' >"$T/net.csv"
if "$SIM" model --topology "$T/net.csv" --arch "$EDGE" --wfmts e4m3,e2m1 --afmts e4m3 -q \
  -o "$T/net_table.csv" --totals "$T/net_totals.csv" 2>"$T/err"; then
  [ "$(($(wc -l <"$T/net_totals.csv") - 1))" -eq 2 ] && ok "topology totals" || bad "topology totals"
else
  bad "topology run failed: $(cat "$T/err")"
fi

# Sweeps: a finished point is reused only when every setting matches.
S=$T/sweep
run_sweep() {
  "$SIM" sweep --arch "$EDGE" --vary dram.gbps=34,68 --vary clock_ghz=1,2 --config "$LLAMA" \
    --tokens "$1" --context 256 --wfmts e4m3,e2m1 --afmts e4m3,e2m1 -j 2 -o "$S" 2>"$T/sweep_err"
}
if run_sweep 64; then
  grep -q "4 to run" "$T/sweep_err" && ok "sweep: 4 points" || bad "sweep: $(cat "$T/sweep_err")"
  run_sweep 64 && grep -q "0 to run" "$T/sweep_err" && ok "sweep: finished points reused" ||
    bad "sweep rerun: $(cat "$T/sweep_err")"
  if run_sweep 128 && grep -q "setting 'options.tokens' differs" "$T/sweep_err" &&
    grep -q "4 to run" "$T/sweep_err"; then
    ok "sweep: a changed setting is named and recomputed"
  else
    bad "sweep with other tokens: $(cat "$T/sweep_err")"
  fi
  awk -F, 'NR > 1 && $6 == "prefill" && $7 != 128 { exit 1 }' "$S/sweep.csv" &&
    ok "sweep.csv holds the new tokens" || bad "sweep.csv still holds old rows"
  grep -q noenhanced "$S/plot.gp" && grep -q "clock_ghz = 2" "$S/plot.gp" &&
    ok "plot: one line per value of the second key, plain titles" || bad "plot.gp"
  [ -s "$S/sweep.svg" ] && ok "sweep.svg written" || bad "no sweep.svg"
else
  bad "sweep failed: $(cat "$T/sweep_err")"
fi

echo "sim_cli: $fails failed"
[ $fails -eq 0 ]
