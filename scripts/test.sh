#!/usr/bin/env bash
# Installs what is missing, builds, and runs the default test set (everything but `long`), then the
# sanitizer build's tests (ASan + UBSan, libFuzzer targets; scripts/test_sanitizers.sh).
# DMX_SKIP_SANITIZERS=1 runs the main set only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
(cd build && ctest --output-on-failure -LE long -j"${DMX_JOBS:-$(nproc)}")
if [ "${DMX_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== sanitizer build (clang, ASan + UBSan, fuzzers): scripts/test_sanitizers.sh"
  bash scripts/test_sanitizers.sh
fi
