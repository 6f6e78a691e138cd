#!/usr/bin/env bash
# Runs the CPU kernel benchmarks on N threads (default 2) and writes reports/kernels_cpu.json
# (raw Google Benchmark JSON + derived ratios) and reports/kernels_cpu.md (a short table).
#   kernels/bench/run_bench.sh [BUILD_DIR] [THREADS] [extra benchmark flags, e.g. --quick]
# Every benchmark runs 5 times in random order (the report shows medians: the machine is shared,
# and interleaving keeps a busy spell from landing on one benchmark only); later flags win.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build-kernels}"; threads="${2:-2}"; shift $(( $# > 2 ? 2 : $# )) || true
bin="$build/bin/dmx-bench-kernels"
[[ -x "$bin" ]] || { echo "run_bench.sh: $bin not found (build target dmx-bench-kernels)" >&2; exit 2; }
mkdir -p "$root/reports"
raw="$(mktemp "$root/reports/.kernels_cpu_raw.XXXXXX")"
trap 'rm -f "$raw"' EXIT
DMX_THREADS="$threads" "$bin" --threads "$threads" --benchmark_repetitions=5 \
  --benchmark_enable_random_interleaving=true "$@" --benchmark_format=json --benchmark_out="$raw" \
  --benchmark_out_format=json >/dev/null
DMX_BENCH_CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')" \
DMX_BENCH_CPU_FLAGS="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | grep -E '^(sse4_2|avx|avx2|fma|f16c|avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*)$' | tr '\n' ' ' | sed 's/ $//')" \
DMX_BENCH_COMMAND="kernels/bench/run_bench.sh $(basename "$build") $threads $*" \
DMX_BENCH_COMMIT="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  python3 "$root/kernels/bench/render_report.py" "$raw" "$root/reports/kernels_cpu.json" "$root/reports/kernels_cpu.md"
echo "wrote reports/kernels_cpu.json and reports/kernels_cpu.md"
