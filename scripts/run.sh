#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the golden MX model's CLI on an example
# (quantize a block to MXFP4 and MXFP8, then dot the two exactly and blocked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
B=build/bin
$B/dmx-mx formats
$B/dmx-mx quantize -f mxfp4 --pad 0.1 -0.7 1.3 2.9 -5.5 6.2 0.02 3.3
$B/dmx-mx dot --pad --a-format e4m3 --a-values "0.1 -0.7 1.3 2.9 -5.5 6.2 0.02 3.3" \
  --b-format e2m1 --b-values "1 -0.5 6 0.25 2 -3 1.5 4"
