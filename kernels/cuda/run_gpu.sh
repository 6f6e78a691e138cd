#!/usr/bin/env bash
# Builds, tests and benchmarks the dMX CUDA kernels on a GPU machine in one go and writes one JSON
# of the results (budget: under 8 minutes on an H200 machine with 16 cores).
#
# Usage: kernels/cuda/run_gpu.sh [RESULT_JSON]
#   RESULT_JSON defaults to $OUT/cuda_gpu_results.json when $OUT is set, else
#   build-gpu/cuda_gpu_results.json. A log of every step goes next to it (cuda_gpu_log.txt).
# Env: DMX_CUDA_ARCH (default 90), DMX_GPU_BUILD (build dir, default build-gpu), DMX_JOBS,
#      DMX_BENCH_QUICK=1 (smaller benchmark sizes).
#
# Steps: (1) CMake build of the CUDA library, its tests and dmx-bench-cuda; if CMake or a test
# dependency is missing on the machine, the benchmark alone is built with nvcc directly.
# (2) Host-side tests, then the GPU tests (gtest JSON kept). (3) The benchmark (JSON kept).
# Exit status: 0 when everything that ran passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
BUILD=${DMX_GPU_BUILD:-build-gpu}
ARCH=${DMX_CUDA_ARCH:-90}
if [ -n "${OUT:-}" ]; then RESULT=${1:-$OUT/cuda_gpu_results.json}; else RESULT=${1:-$BUILD/cuda_gpu_results.json}; fi
mkdir -p "$BUILD" "$(dirname "$RESULT")"
LOG=$(dirname "$RESULT")/cuda_gpu_log.txt
: >"$LOG"
JOBS=${DMX_JOBS:-$(nproc 2>/dev/null || echo 4)}
NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
step() { echo "[run_gpu $(($(date +%s) - start))s] $*" | tee -a "$LOG" >&2; }
json_str() { printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
json_file_or_null() { if [ -s "$1" ]; then cat "$1"; else printf 'null'; fi; }

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>>"$LOG" | head -1)
step "GPU: ${gpu:-none reported by nvidia-smi}; nvcc: $NVCC; arch sm_$ARCH; $JOBS jobs"

# ---- 1. build
build_mode=none
build_ok=false
if command -v cmake >/dev/null 2>&1; then
  step "cmake configure + build"
  if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" \
      -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DDMX_WITH_CUDA=ON -DDMX_WITH_TORCH=OFF \
      -DDMX_WITH_RTL=OFF -DDMX_WITH_SYSTEMC=OFF >>"$LOG" 2>&1 &&
    cmake --build "$BUILD" -j"$JOBS" --target test_kernels_cuda_host test_kernels_cuda_gpu \
      dmx-bench-cuda >>"$LOG" 2>&1; then
    build_mode=cmake
    build_ok=true
  else
    step "cmake build failed (see log); falling back to a direct nvcc build of the benchmark"
  fi
fi
if [ "$build_ok" = false ]; then
  step "nvcc build of dmx-bench-cuda"
  mkdir -p "$BUILD/bin"
  if "$NVCC" -O3 -std=c++17 -arch=sm_"$ARCH" -Xcompiler=-fno-fast-math,-ffp-contract=off \
      -Igolden/include -Iutil/include -Ikernels/include -Ikernels/cuda golden/src/*.cc \
      util/src/*.cc kernels/cuda/*.cu kernels/cuda/bench_cuda.cc -lcublas \
      -o "$BUILD/bin/dmx-bench-cuda" >>"$LOG" 2>&1; then
    build_mode=nvcc
    build_ok=true
  fi
fi
step "build: mode=$build_mode ok=$build_ok"

# ---- 2. tests
host_rc=null
gpu_rc=null
gpu_status=not_built
rm -f "$BUILD/host_tests.json" "$BUILD/gpu_tests.json" "$BUILD/bench.json"
if [ -x "$BUILD/bin/test_kernels_cuda_host" ]; then
  step "host-side tests"
  timeout 120 "$BUILD/bin/test_kernels_cuda_host" --gtest_output=json:"$BUILD/host_tests.json" \
    >>"$LOG" 2>&1
  host_rc=$?
fi
if [ -x "$BUILD/bin/test_kernels_cuda_gpu" ]; then
  step "GPU tests"
  timeout 300 "$BUILD/bin/test_kernels_cuda_gpu" --gtest_output=json:"$BUILD/gpu_tests.json" \
    2>&1 | tee -a "$LOG" | grep -E "^(device|SKIPPED|\[  (PASSED|FAILED) )|fast " >&2
  gpu_rc=${PIPESTATUS[0]}
  case $gpu_rc in 0) gpu_status=passed ;; 77) gpu_status=skipped ;; 124) gpu_status=timeout ;; *) gpu_status=failed ;; esac
fi
step "tests: host rc=$host_rc, gpu $gpu_status (rc=$gpu_rc)"

# ---- 3. benchmark
bench_rc=null
if [ -x "$BUILD/bin/dmx-bench-cuda" ]; then
  step "benchmark"
  quick=()
  [ "${DMX_BENCH_QUICK:-0}" = 1 ] && quick=(--quick)
  timeout 330 "$BUILD/bin/dmx-bench-cuda" --out "$BUILD/bench.json" "${quick[@]}" 2>&1 |
    tee -a "$LOG" >&2
  bench_rc=${PIPESTATUS[0]}
fi
step "benchmark rc=$bench_rc"

# ---- 4. one JSON (temp file, then rename)
end=$(date +%s)
tmp="$RESULT.tmp.$$"
{
  printf '{\n"script": "kernels/cuda/run_gpu.sh",\n'
  printf '"git_commit": %s,\n' "$(json_str "$(git rev-parse HEAD 2>/dev/null || echo unknown)")"
  printf '"date_utc": %s,\n' "$(json_str "$(date -u +%FT%TZ)")"
  printf '"gpu": %s,\n"cuda_arch": %s,\n' "$(json_str "${gpu:-}")" "$(json_str "$ARCH")"
  printf '"build": {"mode": %s, "ok": %s},\n' "$(json_str "$build_mode")" "$build_ok"
  printf '"host_tests": {"rc": %s, "gtest": ' "$host_rc"
  json_file_or_null "$BUILD/host_tests.json"
  printf '},\n"gpu_tests": {"rc": %s, "status": %s, "gtest": ' "$gpu_rc" "$(json_str "$gpu_status")"
  json_file_or_null "$BUILD/gpu_tests.json"
  printf '},\n"bench": {"rc": %s, "results": ' "$bench_rc"
  json_file_or_null "$BUILD/bench.json"
  printf '},\n"wall_seconds": %s\n}\n' "$((end - start))"
} >"$tmp" && mv "$tmp" "$RESULT"
step "wrote $RESULT (log: $LOG)"

ok=true
[ "$build_ok" = true ] || ok=false
[ "$host_rc" = null ] || [ "$host_rc" = 0 ] || ok=false
[ "$gpu_status" = passed ] || ok=false
[ "$bench_rc" = 0 ] || ok=false
[ "$ok" = true ]
