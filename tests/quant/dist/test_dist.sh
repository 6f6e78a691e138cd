#!/usr/bin/env bash
# dmx-eval, dmx-search and dmx-sim sweep on 2 ranks of localhost (LibTorch c10d, Gloo), compared
# with single-process runs of the same commands (the independent reference), plus faults: a rank
# killed mid-search, a rank that never joins, an unreachable master, bad launch variables.
# Every case picks free ports, runs under `timeout`, uses 1 thread per process and the fixed
# calibration seed 0 (printed on failure).
# Usage: test_dist.sh CASE BIN_DIR SOURCE_DIR   (CASE: eval | search | resume | fault | sweep)
set -uo pipefail
CASE=$1
BIN=$2
SRC=$3
T=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $1"; }
bad() {
  echo "FAIL: $1 (seed 0)"
  fails=$((fails + 1))
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Runs "$@" as ranks 0 and 1 of a 2-process group on a free port; stderr of rank R in $T/$TAG.R.
TAG=run
two() {
  local port
  port=$(free_port)
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 timeout 60 "$@" >"$T/$TAG.1.out" 2>"$T/$TAG.1" &
  local p1=$!
  PIDS+=($p1)
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "$@" >"$T/$TAG.0.out" 2>"$T/$TAG.0"
  local rc0=$?
  wait $p1
  local rc1=$?
  [ $rc0 -eq 0 ] && [ $rc1 -eq 0 ]
}
MODEL=$SRC/models/llama-tiny
# Exits non-zero (printing the first difference) unless the JSON files are equal in the keys given.
json_equal() {
  python3 - "$@" <<'EOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in sys.argv[3:]:
    if a.get(k) != b.get(k):
        print(f"  {k}: {a.get(k)!r} != {b.get(k)!r}"[:400])
        sys.exit(1)
EOF
}

case "$CASE" in
eval)
  # Sharded perplexity equals one process exactly: whole batches per rank, per-batch sums reduced
  # in batch order in FP64. Batch 3 over 20 windows: 7 batches, split 3 + 4, the last one short.
  for batch in 1 3; do
    E=("$BIN/dmx-eval" --model "$MODEL" --data "$SRC/data/wiki.test.raw" --seqlen 64 --max-windows 20
      --batch $batch --threads 1 --quiet)
    if "${E[@]}" --out "$T/one.json" >/dev/null 2>"$T/one.err" && TAG=e$batch two "${E[@]}" --out "$T/two.json"; then
      if json_equal "$T/one.json" "$T/two.json" perplexity mean_nll predicted_tokens windows; then
        ok "eval batch $batch: 2 ranks equal one process ($(grep -o '"perplexity": [0-9.]*' "$T/two.json"))"
      else
        bad "eval batch $batch: 2 ranks differ from one process"
      fi
      grep -q '"world_size": 2' "$T/two.json" && ok "eval: world_size recorded" || bad "eval: world_size"
      [ -s "$T/e$batch.1.out" ] && bad "eval: rank 1 printed a result" || ok "eval: only rank 0 prints"
    else
      bad "eval batch $batch failed: $(cat "$T/one.err" "$T/e$batch.0" "$T/e$batch.1" | tail -3)"
    fi
  done
  ;;
search)
  # dMX on 2 ranks, global batch 4 (2 windows per rank) against one process with micro-batches of
  # 2 windows: the same passes, the same FP64 sums in the same order, so everything is bit-equal.
  S0=("$BIN/dmx-search" --model "$MODEL" --data "$SRC/data/wiki.valid.raw" --method dmx --budget 5.5
    --lr 20 --seqlen 64 --calib-windows 16 --eval-windows 8 --threads 1 --seed 0)
  S=("${S0[@]}" --steps 8 --batch 4)
  if "${S[@]}" --micro-batch 2 --out "$T/one" 2>"$T/one.err" && TAG=s two "${S[@]}" --out "$T/two"; then
    json_equal "$T/one/assignment.json" "$T/two/assignment.json" layers total_cost &&
      ok "search: 2 ranks give one process's assignment" || bad "search: assignments differ"
    json_equal "$T/one/metrics.json" "$T/two/metrics.json" loss_curve theta_weight perplexity &&
      ok "search: loss curve, offsets and perplexity bit-equal" || bad "search: curves differ"
    [ -s "$T/two/metrics.json" ] && ! ls "$T"/two/*.tmp* >/dev/null 2>&1 && ok "search: outputs complete" ||
      bad "search: outputs"
  else
    bad "search failed: $(cat "$T/one.err" "$T/s.0" "$T/s.1" | tail -3)"
  fi
  # Against one process with one pass over the batch: at step 1 (theta = 0 in both) only the float
  # reduction order differs: the mean of 4 x 63 token losses summed in FP32 in one pass or two.
  # Bound: n u |sum| with n = 252 terms, u = 2^-24 (1.5e-5 relative; measured ~1e-7).
  if "${S0[@]}" --batch 4 --steps 1 --out "$T/pass" 2>"$T/pass.err" &&
    TAG=p two "${S0[@]}" --batch 4 --steps 1 --out "$T/pass2"; then
    python3 - "$T/pass/metrics.json" "$T/pass2/metrics.json" <<'EOF' && ok "search: step-1 loss of one pass within n*u of 2 ranks" || bad "search: step-1 loss beyond the bound"
import json, sys
a = json.load(open(sys.argv[1]))["loss_curve"]["ce"][0]
b = json.load(open(sys.argv[2]))["loss_curve"]["ce"][0]
bound = 252 * 2.0**-24
print(f"  step-1 CE one pass {a!r}, 2 ranks {b!r}, relative difference {abs(a-b)/abs(a):.3g} (bound {bound:.3g})")
sys.exit(0 if abs(a - b) <= bound * abs(a) else 1)
EOF
  else
    bad "one-pass search failed: $(cat "$T/pass.err" "$T/p.0" | tail -3)"
  fi
  # --batch not divisible by WORLD_SIZE: usage error on every rank, nothing written.
  TAG=odd two "${S0[@]}" --steps 8 --batch 3 --out "$T/odd"
  if [ "$(head -c 300 "$T/odd.0")" != "" ] && grep -q "not a multiple of WORLD_SIZE=2" "$T/odd.0" &&
    [ "$(wc -l <"$T/odd.0")" -eq 1 ] && [ ! -e "$T/odd" ]; then
    ok "search: --batch 3 on 2 ranks refused in one line"
  else
    bad "search: --batch 3: $(cat "$T/odd.0")"
  fi
  ;;
resume)
  # Killed (--stop-after) and rerun on 2 ranks: bit-equal to the uninterrupted 2-rank run. Then the
  # same checkpoint resumed by one process with --micro-batch 2: the state holds no world size.
  S=("$BIN/dmx-search" --model "$MODEL" --data "$SRC/data/wiki.valid.raw" --method dmx --budget 5.5
    --lr 20 --steps 8 --batch 4 --seqlen 64 --calib-windows 16 --eval-windows 4 --threads 1 --seed 0
    --checkpoint-every 2)
  TAG=full two "${S[@]}" --out "$T/full" || bad "uninterrupted run: $(tail -2 "$T/full.0")"
  TAG=a two "${S[@]}" --out "$T/part" --stop-after 4 || bad "stopped run: $(tail -2 "$T/a.0")"
  cp -r "$T/part" "$T/part1"
  if grep -q "stopped after step 4" "$T/a.0" && [ ! -e "$T/part/metrics.json" ]; then
    ok "resume: stopped after 4 steps, checkpoint only"
  else
    bad "resume: stop: $(tail -2 "$T/a.0")"
  fi
  if TAG=b two "${S[@]}" --out "$T/part"; then
    json_equal "$T/full/metrics.json" "$T/part/metrics.json" theta_weight perplexity &&
      json_equal "$T/full/assignment.json" "$T/part/assignment.json" layers &&
      grep -q '"resumed": true' "$T/part/metrics.json" &&
      ok "resume: 2 ranks resumed = uninterrupted, bit for bit" || bad "resume: differs"
  else
    bad "resume run failed: $(tail -2 "$T/b.0")"
  fi
  if timeout 60 "${S[@]}" --micro-batch 2 --out "$T/part1" 2>"$T/c.err"; then
    json_equal "$T/full/metrics.json" "$T/part1/metrics.json" theta_weight perplexity &&
      ok "resume: one process continues a 2-rank checkpoint bit-equal" || bad "resume: 1-process continuation differs"
  else
    bad "1-process resume failed: $(tail -2 "$T/c.err")"
  fi
  ;;
fault)
  S=("$BIN/dmx-search" --model "$MODEL" --data "$SRC/data/wiki.valid.raw" --method dmx --budget 5.5
    --lr 20 --steps 400 --batch 2 --seqlen 64 --calib-windows 16 --eval-windows 4 --threads 1 --seed 0
    --checkpoint-every 2 --dist-timeout 5 --out "$T/f")
  port=$(free_port)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "${S[@]}" 2>"$T/f0" &
  p0=$!
  PIDS+=($p0)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=1 "${S[@]}" 2>"$T/f1" &
  p1=$!
  PIDS+=($p1)
  for _ in $(seq 300); do
    [ -s "$T/f/checkpoint.json" ] && break
    sleep 0.1
  done
  sleep 0.3
  kill -9 $p1
  t0=$(date +%s%N)
  wait $p0
  rc=$?
  dt=$((($(date +%s%N) - t0) / 1000000))
  if [ $rc -eq 1 ] && [ $dt -lt 8000 ] && [ "$(grep -c error "$T/f0")" -eq 1 ] &&
    grep -q "error: rank 0 of 2: allreduce failed" "$T/f0"; then
    ok "fault: rank 1 killed, rank 0 exits 1 after $dt ms: $(grep error "$T/f0")"
  else
    bad "fault: rank 0 rc $rc after $dt ms: $(tail -2 "$T/f0")"
  fi
  step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$T/f/checkpoint.json" 2>/dev/null)
  if [ -n "$step" ] && [ "$step" -ge 2 ]; then
    ok "fault: checkpoint of step $step intact"
  else
    bad "fault: no readable checkpoint"
  fi
  TAG=r two "${S[@]}" --stop-after 1
  if grep -q "stopped after step $((step + 1))" "$T/r.0"; then
    ok "fault: rerun resumes at step $step"
  else
    bad "fault: rerun: $(tail -2 "$T/r.0")"
  fi
  # A rank that never joins: rank 0 gives up after --dist-timeout, writes nothing.
  E=("$BIN/dmx-eval" --model "$MODEL" --data "$SRC/data/wiki.test.raw" --seqlen 64 --max-windows 4 --threads 1 --quiet)
  port=$(free_port)
  t0=$(date +%s%N)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "${E[@]}" --dist-timeout 2 --out "$T/nj.json" 2>"$T/nj"
  rc=$?
  dt=$((($(date +%s%N) - t0) / 1000000))
  if [ $rc -eq 1 ] && [ $dt -lt 6000 ] && [ ! -e "$T/nj.json" ] && [ "$(wc -l <"$T/nj")" -eq 1 ] &&
    grep -q "rank(s) 1 did not join within 2 s" "$T/nj"; then
    ok "fault: a rank that never joins: $(cat "$T/nj") ($dt ms)"
  else
    bad "fault: never-joining rank: rc $rc, $dt ms: $(cat "$T/nj")"
  fi
  # No master: rank 1 gives up after the timeout.
  MASTER_PORT=$port WORLD_SIZE=2 RANK=1 timeout 60 "${E[@]}" --dist-timeout 1 2>"$T/nm"
  rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l <"$T/nm")" -eq 1 ] && grep -q "cannot reach the master (rank 0) at MASTER_ADDR:MASTER_PORT 127.0.0.1:$port" "$T/nm" &&
    ok "fault: unreachable master named" || bad "fault: unreachable master: rc $rc: $(cat "$T/nm")"
  # Bad launch variables: usage errors naming the variable, exit 2.
  check_usage() {
    local want=$1
    shift
    env "$@" timeout 60 "${E[@]}" --out "$T/bad.json" 2>"$T/bad"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T/bad")" -eq 1 ] && grep -q "$want" "$T/bad" && [ ! -e "$T/bad.json" ]; then
      ok "usage: $* -> $(cat "$T/bad")"
    else
      bad "usage: $*: rc $rc: $(cat "$T/bad")"
    fi
  }
  check_usage "WORLD_SIZE='two' is not an integer" WORLD_SIZE=two RANK=0 MASTER_PORT=$port
  check_usage "RANK=2 is not below WORLD_SIZE=2" WORLD_SIZE=2 RANK=2 MASTER_PORT=$port
  check_usage "no MASTER_PORT" WORLD_SIZE=2 RANK=0
  check_usage "MASTER_PORT='70000' is not an integer in \[1, 65535\]" WORLD_SIZE=2 RANK=0 MASTER_PORT=70000
  check_usage "DMX_DIST_TIMEOUT='-1'" WORLD_SIZE=2 RANK=0 MASTER_PORT=$port DMX_DIST_TIMEOUT=-1
  # WORLD_SIZE disagreeing between ranks: both refuse with the two values.
  port=$(free_port)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "${E[@]}" --dist-timeout 10 2>"$T/m0" &
  p0=$!
  PIDS+=($p0)
  MASTER_PORT=$port WORLD_SIZE=3 RANK=1 timeout 60 "${E[@]}" --dist-timeout 10 2>"$T/m1"
  rc1=$?
  wait $p0
  rc0=$?
  [ $rc0 -eq 1 ] && [ $rc1 -eq 1 ] && grep -q "rank 1 was started with WORLD_SIZE=3, rank 0 with WORLD_SIZE=2" "$T/m0" &&
    grep -q "WORLD_SIZE=3, rank 0 with WORLD_SIZE=2" "$T/m1" && ok "fault: WORLD_SIZE mismatch refused on both ranks" ||
    bad "fault: WORLD_SIZE mismatch: $rc0 $rc1: $(cat "$T/m0" "$T/m1")"
  ;;
sweep)
  # dmx-sim sweep: points dealt to 2 ranks and gathered at rank 0 = the one-process sweep, byte for
  # byte (the simulator is deterministic); a rank that dies leaves the received points written and
  # a rerun runs only the missing ones.
  SW=("$BIN/dmx-sim" sweep --arch "$SRC/sim/configs/edge_npu.json" --vary dram.gbps=34,68,136,272
    --vary clock_ghz=0.5,1,2,4 --config "$SRC/models/llama-tiny/config.json" --tokens 64 --context 256
    --wfmts e4m3,e2m1 --afmts e4m3,e2m1 -j 1)
  if timeout 60 "${SW[@]}" -o "$T/w1" 2>"$T/w1.err" && TAG=w two "${SW[@]}" -o "$T/w2"; then
    cmp -s "$T/w1/sweep.csv" "$T/w2/sweep.csv" && ok "sweep: 2 ranks' sweep.csv = one process's" ||
      bad "sweep: sweep.csv differs"
    same=1
    for d in "$T"/w1/points/*; do
      cmp -s "$d/table.csv" "$T/w2/points/$(basename "$d")/table.csv" || same=0
    done
    [ $same -eq 1 ] && ok "sweep: every point's table equal" || bad "sweep: a point table differs"
    grep -q "16 points, 16 to run, 8 here" "$T/w.1" && ok "sweep: rank 1 ran half the points" || bad "sweep: split: $(cat "$T/w.1")"
  else
    bad "sweep failed: $(cat "$T/w1.err" "$T/w.0" "$T/w.1" | tail -3)"
  fi
  # Rank 1 never starts: rank 0 fails at the rendezvous after --dist-timeout, naming rank 1.
  port=$(free_port)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "${SW[@]}" -o "$T/w3" --dist-timeout 2 2>"$T/w3.err"
  rc=$?
  if [ $rc -eq 1 ] && grep -q "rank(s) 1 did not join within 2 s" "$T/w3.err"; then
    ok "sweep: missing rank refused at the rendezvous: $(grep error "$T/w3.err")"
  else
    bad "sweep: missing rank: rc $rc: $(tail -2 "$T/w3.err")"
  fi
  # Rank 1 silent once it has joined (DMX_TEST_SILENT_RANK: it sends no point; a SIGSTOP from
  # outside could freeze it in the middle of a store message and stall the store for everyone),
  # later killed: rank 0 runs its 8 points, writes every point that arrived, fails naming rank 1
  # after --dist-timeout without progress; a one-process rerun runs only the missing points.
  port=$(free_port)
  DMX_TEST_SILENT_RANK=1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 "${SW[@]}" -o "$T/w4" --dist-timeout 3 2>"$T/w4.1" &
  p1=$!
  PIDS+=($p1)
  MASTER_PORT=$port WORLD_SIZE=2 RANK=0 timeout 60 "${SW[@]}" -o "$T/w4" --dist-timeout 3 2>"$T/w4.0"
  rc=$?
  kill -9 $p1 2>/dev/null
  n=$(ls "$T"/w4/points/*/settings.json 2>/dev/null | wc -l)
  if [ $rc -eq 1 ] && grep -q "no point arrived from rank(s) 1 within 3 s" "$T/w4.0" && [ "$n" -ge 8 ] &&
    [ "$n" -lt 16 ] && [ ! -e "$T/w4/sweep.csv" ]; then
    ok "sweep: a silent rank: $(grep error "$T/w4.0"); $n points kept"
  else
    bad "sweep: silent rank: rc $rc, $n points: $(tail -2 "$T/w4.0")"
  fi
  if timeout 60 "${SW[@]}" -o "$T/w4" 2>"$T/w5.err" && grep -q "16 points, $((16 - n)) to run" "$T/w5.err" &&
    cmp -s "$T/w1/sweep.csv" "$T/w4/sweep.csv"; then
    ok "sweep: rerun ran the $((16 - n)) missing points, sweep.csv = the one-process sweep"
  else
    bad "sweep: rerun: $(tail -2 "$T/w5.err")"
  fi
  ;;
*)
  echo "test_dist.sh: unknown case $CASE" >&2
  exit 2
  ;;
esac
echo "quant_dist_$CASE: $fails failed"
[ $fails -eq 0 ]
