#!/usr/bin/env bash
# Area of mx_dot_unit per format configuration with Yosys, written as CSV.
#
# Usage: rtl/synth/area.sh [OUT.csv]      (default: reports/rtl_area.csv)
# Env:   YOSYS (default yosys), DMX_JOBS (parallel Yosys runs, default nproc),
#        DMX_AREA_CONFIGS (default "all E4M3 E5M2 E3M2 E2M3 E2M1 INT8"), DMX_RTL_STAGES (4).
# Exit:  0 written, 1 a synthesis failed, 2 usage, 77 Yosys not installed (ctest SKIP).
#
# Columns: configuration, formats (FORMATS mask, bit i = MxFormat i), stages, sum_bits (width of
# the exact block-sum adder), cells (all cells after ABC mapping), flops, gate_equivalents (NAND2
# equivalents: INV 0.67, NAND2/NOR2 1, AND2/OR2/ANDNOT/ORNOT 1.33, XOR2/XNOR2 2, MUX2 2.33,
# DFF 4.67, +2.33 with enable, +0.67 with set/reset; NanGate45-style weights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rtl=$(dirname "$here")
out=${1:-$rtl/../reports/rtl_area.csv}
if [ $# -gt 1 ] || [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -gt 1 ] && exit 2 || exit 0
fi
YOSYS=${YOSYS:-yosys}
if ! command -v "$YOSYS" >/dev/null 2>&1; then
  echo "SKIP: yosys not found (scripts/setup.sh installs it); $out not written"
  exit 77
fi
jobs=${DMX_JOBS:-$(nproc)}
stages=${DMX_RTL_STAGES:-4}
configs=${DMX_AREA_CONFIGS:-"all E4M3 E5M2 E3M2 E2M3 E2M1 INT8"}
mask_of() {
  case "$1" in
    all) echo 111111 ;; E4M3) echo 000001 ;; E5M2) echo 000010 ;; E3M2) echo 000100 ;;
    E2M3) echo 001000 ;; E2M1) echo 010000 ;; INT8) echo 100000 ;;
    fp8) echo 000011 ;; fp6) echo 001100 ;; *) return 1 ;;
  esac
}
sources="$rtl/mx_dot_unit.v $rtl/mx_elem_decode.v $rtl/mx_round_fp32.v $rtl/mx_fp32_add.v $rtl/mx_pipe_stage.v"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

synth_one() {  # name mask
  local name=$1 mask=$2
  "$YOSYS" -q -l "$work/$name.log" -p "
    read_verilog -I$rtl $sources
    chparam -set FORMATS 6'b$mask -set STAGES $stages mx_dot_unit
    hierarchy -top mx_dot_unit
    proc
    tee -q -o $work/$name.sum dump w:b_sum
    script $here/mx_dot_unit_area.ys
    tee -q -o $work/$name.stat stat" >/dev/null 2>&1 || { echo "FAILED" >"$work/$name.failed"; }
}

echo "rtl area: synthesizing ${configs} with $YOSYS (STAGES=$stages, $jobs in parallel)"
running=0
for name in $configs; do
  mask=$(mask_of "$name") || { echo "area.sh: unknown configuration '$name'" >&2; exit 2; }
  synth_one "$name" "$mask" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

tmp_out="$out.tmp.$$"
mkdir -p "$(dirname "$out")"
echo "configuration,formats,stages,sum_bits,cells,flops,gate_equivalents" >"$tmp_out"
status=0
for name in $configs; do
  mask=$(mask_of "$name")
  if [ -e "$work/$name.failed" ] || [ ! -s "$work/$name.stat" ]; then
    echo "area.sh: Yosys failed for $name; log:" >&2
    tail -20 "$work/$name.log" >&2 || true
    status=1
    continue
  fi
  sum_bits=$(grep -o 'wire width [0-9]*' "$work/$name.sum" | head -1 | awk '{print $3}')
  awk -v name="$name" -v mask="$mask" -v stages="$stages" -v sum_bits="${sum_bits:-?}" '
    /Number of cells:/ { cells = $4 }
    /^ +\$_/ {
      c = $1; n = $2; w = 0
      if (c ~ /DFF/) {
        flops += n; w = 4.67
        if (c ~ /DFFE|CE_/) w += 2.33
        if (c ~ /_P[NP][01]|SDFF|DFFSR/) w += 0.67
      } else if (c == "$_NOT_") w = 0.67
      else if (c == "$_NAND_" || c == "$_NOR_") w = 1
      else if (c == "$_AND_" || c == "$_OR_" || c == "$_ANDNOT_" || c == "$_ORNOT_") w = 1.33
      else if (c == "$_XOR_" || c == "$_XNOR_") w = 2
      else if (c == "$_MUX_") w = 2.33
      else { printf "area.sh: no weight for cell %s\n", c > "/dev/stderr"; w = 1 }
      ge += n * w
    }
    END { printf "%s,%s,%d,%s,%d,%d,%.0f\n", name, mask, stages, sum_bits, cells, flops, ge }
  ' "$work/$name.stat" >>"$tmp_out"
done
if [ "$status" -ne 0 ]; then rm -f "$tmp_out"; exit "$status"; fi
# Sanity of the numbers: a unit for fewer/narrower formats must be smaller.
ge_of() { awk -F, -v n="$1" '$1 == n { print $7 }' "$tmp_out"; }
check_smaller() {  # small big
  local a b
  a=$(ge_of "$1"); b=$(ge_of "$2")
  if [ -n "$a" ] && [ -n "$b" ] && ! awk -v a="$a" -v b="$b" 'BEGIN { exit !(a < b) }'; then
    echo "area.sh: implausible areas: $1 ($a GE) is not smaller than $2 ($b GE)" >&2
    status=1
  fi
}
check_smaller E2M1 E4M3
check_smaller E2M1 E5M2
check_smaller E4M3 E5M2
check_smaller E2M1 E2M3
for single in E4M3 E5M2 E3M2 E2M3 E2M1 INT8; do check_smaller "$single" all; done
if [ "$status" -ne 0 ]; then column -s, -t "$tmp_out" >&2; rm -f "$tmp_out"; exit 1; fi
mv "$tmp_out" "$out"
column -s, -t "$out"
echo "rtl area: wrote $out"
