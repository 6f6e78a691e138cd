#!/usr/bin/env bash
# A Llama-3.2-1B-shaped checkpoint with random weights (BF16, ~2.5 GB; never committed): the
# published meta-llama/Llama-3.2-1B config.json, N(0, 0.02^2) weights, the real Llama 3 tokenizer
# (extracted into the build tree at configure time).
#   quant/deploy/bench/make_llama32_1b.sh BUILD_DIR OUT_DIR [SEED]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR [SEED]" >&2
  exit 2
fi
build=$1 out=$2 seed=${3:-0}
tok=$build/tests/quant/tokenizers/llama3_tokenizer.json
[ -x "$build/bin/dmx-random-model" ] || { echo "$0: $build/bin/dmx-random-model: not built" >&2; exit 1; }
[ -f "$tok" ] || { echo "$0: $tok: missing (configure the build with quant/ enabled)" >&2; exit 1; }
cfg=$(mktemp --suffix=.json)
trap 'rm -f "$cfg"' EXIT
cat > "$cfg" <<'JSON'
{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256
}
JSON
"$build/bin/dmx-random-model" --config "$cfg" --out "$out" --seed "$seed" --tokenizer "$tok"
