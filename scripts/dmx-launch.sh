#!/usr/bin/env bash
# Starts N local ranks of a dmx-* command the way torchrun does: each process gets MASTER_ADDR,
# MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (quant/README.md, "More than one
# machine"). A quick try on one machine; on several, set the same variables yourself (or run
# torchrun --no-python).
#   scripts/dmx-launch.sh -n 2 -- build/bin/dmx-eval --model models/llama-tiny --data data/wiki.test.raw
# Options: -n N ranks (default 2), -p PORT (default: a free one), -t SECONDS (DMX_DIST_TIMEOUT).
# Exit status: the first non-zero status in rank order, else 0. Ctrl-C stops every rank.
set -u
n=2
port=""
timeout=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    -t) timeout="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "dmx-launch: error: unknown option '$1' (usage: dmx-launch.sh -n N [-p PORT] [-t S] -- CMD ...)" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "dmx-launch: error: no command after -- (usage: dmx-launch.sh -n N -- CMD ...)" >&2
  exit 2
fi
case "$n" in ''|*[!0-9]*) echo "dmx-launch: error: -n '$n' is not a positive integer" >&2; exit 2 ;; esac
if [ "$n" -lt 1 ]; then echo "dmx-launch: error: -n must be at least 1" >&2; exit 2; fi
if [ -z "$port" ]; then
  # A port the kernel reports free right now (bound to 0, then released).
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) ||
    port=$((20000 + RANDOM % 40000))
fi
export MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" WORLD_SIZE="$n" LOCAL_WORLD_SIZE="$n"
[ -n "$timeout" ] && export DMX_DIST_TIMEOUT="$timeout"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap 'stop; exit 130' INT TERM
for ((r = 0; r < n; r++)); do
  RANK=$r LOCAL_RANK=$r "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do
  wait "$p"
  rc=$?
  [ "$status" -eq 0 ] && status=$rc
done
exit "$status"
