#!/usr/bin/env bash
# Rebuilds the shipped tokenizer and trains one (or all) of the shipped models, exactly as the
# READMEs record. Usage: models/train.sh [BUILD_DIR] [llama-tiny|smollm2-tiny|qwen3-tiny|all]
# Needs the corpus: python3 data/make_corpus.py (writes data/wiki.train.raw).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
WHICH=${2:-all}
BIN=$BUILD/bin
[ -f data/wiki.train.raw ] || python3 data/make_corpus.py
[ -f models/tokenizer.json ] || "$BIN"/dmx-bpe-train -i data/wiki.train.raw -o models/tokenizer.json --vocab-size 4096
for m in llama-tiny smollm2-tiny qwen3-tiny; do
  [ "$WHICH" = all ] || [ "$WHICH" = "$m" ] || continue
  # One schedule for all three: 3000 steps (500, the first runs' length, left the models too close
  # to a bigram model to respond to MX quantization).
  STEPS=3000 WARMUP=100 CKPT=100 EVAL=500
  "$BIN"/dmx-train --config models/$m/train_config.json --tokenizer models/tokenizer.json \
    --train data/wiki.train.raw --valid data/wiki.valid.raw --test data/wiki.test.raw \
    --out models/$m --work "${DMX_TRAIN_WORK:-/tmp/dmx-train}/$m" \
    --steps $STEPS --batch 12 --seq 128 --lr 3e-3 --warmup $WARMUP --min-lr-frac 0.1 \
    --weight-decay 0.1 --clip 1.0 --seed 1 --threads 1 --checkpoint-every $CKPT \
    --eval-every $EVAL --eval-windows 16 --log-every 10
done
