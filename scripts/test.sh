#!/usr/bin/env bash
# Installs what is missing, builds, and runs the default test set (everything but `long`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure -LE long -j"${DMX_JOBS:-$(nproc)}"
