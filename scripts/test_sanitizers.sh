#!/usr/bin/env bash
# The sanitizer build: clang with AddressSanitizer + UndefinedBehaviorSanitizer (every UB report is
# fatal) of golden, util, quant's parsers, the simulator and the kernels, plus the libFuzzer target
# of every parser; runs their default tests into build-asan/ (each fuzzer for a few seconds over its
# seed corpus). The RTL, LibTorch and CUDA parts are left out (Verilator's and LibTorch's own code
# is not ours to sanitize; the long sets stay out). Run by scripts/test.sh after the main tests;
# expects scripts/setup.sh to have installed the packages (clang, libclang-rt-14-dev).
#   ctest --test-dir build-asan -L long -R fuzz   # each fuzzer for 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${DMX_JOBS:-$(nproc)}
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DDMX_SANITIZE=ON -DDMX_FUZZERS=ON -DDMX_WITH_TORCH=OFF \
  -DDMX_WITH_RTL=OFF -DDMX_WITH_CUDA=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
cd build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Left out here (they run in the main build): the three tests that take minutes under the
# sanitizers and repeat code paths the others cover (a property test over large simulated GEMMs,
# an every-value element sweep, and the scalar path's copies of two GEMM tests whose AVX2 and
# AVX-512 variants stay in).
SKIP='^(SimWorkload\.NarrowingAnOperandNeverCostsMore|Elements\.EncodeMatchesGridOracle|Paths/KernelPathTest\.Gemm(PrepackedWeightsBitExact|InterleavedTilingAndCornerBlocks)/scalar)( |$)'
ctest --output-on-failure -LE long -E "$SKIP" -j"$JOBS"
