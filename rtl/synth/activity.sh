#!/usr/bin/env bash
# Switching activity and relative dynamic energy per block of mx_dot_unit for every
# (weight, activation) format pair, written as CSV.
#
# Usage: rtl/synth/activity.sh [OUT.csv]      (default: reports/rtl_activity.csv)
# Env:   DMX_BUILD (build folder, default build), DMX_ACTIVITY_BLOCKS (blocks per pair, 20000),
#        DMX_AREA_CSV (default reports/rtl_area.csv, written by rtl/synth/area.sh).
# Needs: the target rtl_activity (cmake --build build --target rtl_activity).
#
# Columns: weight, activation (formats of operand a and b), blocks (measured per pair),
# toggle_bits (signal bits Verilator's --coverage-toggle watches, every instance), toggles_per_block
# (value changes of those bits per block, zero-delay), reg_toggles_per_block (the pipeline
# registers' data bits alone), activity (toggles_per_block / toggle_bits), ge_multi (gate
# equivalents of the all-formats unit), ge_single_weight / ge_single_activation (the single-format
# units, for comparison), energy_rel (activity * ge_multi, relative to E4M3 x E4M3 = 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/reports/rtl_activity.csv}
if [ $# -gt 1 ] || [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -gt 1 ] && exit 2 || exit 0
fi
build=${DMX_BUILD:-$root/build}
bin=$build/bin/rtl_activity
if [ ! -x "$bin" ]; then
  echo "activity.sh: $bin missing; build it: cmake --build $build --target rtl_activity" >&2
  exit 1
fi
"$bin" "${DMX_AREA_CSV:-$root/reports/rtl_area.csv}" "$out" "${DMX_ACTIVITY_BLOCKS:-20000}"
column -s, -t "$out"
