// Decoder-only LLM forward pass in LibTorch for LlamaForCausalLM (Llama 3.x, SmolLM2) and
// Qwen3ForCausalLM, loaded from Hugging Face checkpoints exactly as published.
//
// Every decoder Linear is a `Linear` object reachable by its HF name
// ("model.layers.3.self_attn.q_proj", ...) and replaceable with set_linear(), so quantizers can
// subclass or wrap it. forward() is differentiable (autograd records through it), takes
// [batch, seq] token ids and applies the causal mask.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dmx/quant/config.h"
#include "dmx/quant/memory.h"
#include "dmx/quant/safetensors.h"

namespace dmx::quant {

class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// y = x W^T + b. The model calls forward() through its slot; subclasses change the computation
// (fake quantization, ...) and may own extra trainable tensors.
class Linear {
 public:
  Linear(std::string name, at::Tensor weight, at::Tensor bias = {});
  virtual ~Linear() = default;
  virtual at::Tensor forward(const at::Tensor& x);
  // Tensors a wrapper adds for training (e.g. learnable format offsets), by local name.
  virtual std::vector<std::pair<std::string, at::Tensor>> extra_parameters() const { return {}; }
  const std::string& name() const { return name_; }
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  at::Tensor weight;  // [out_features, in_features]
  at::Tensor bias;    // [out_features], or undefined when the layer has none

 private:
  std::string name_;
};
using LinearPtr = std::shared_ptr<Linear>;

class HadamardTransform;  // dmx/quant/rotate.h

// safetensors view -> tensor (copied out of the mapping). BF16/F16/F32/F64 and the integer types
// keep their dtype; F8_E4M3/F8_E5M2/F8_E8M0/F6/F4 and unsigned 16/32/64 come back as raw uint8
// bytes (last dimension scaled to bytes when it divides evenly, else flattened).
at::Tensor tensor_from_view(const TensorView& view);

// Causal scaled-dot-product attention (softmax in FP32, scale 1 / sqrt(head_dim)) of T new
// queries at positions p0 .. p0 + T - 1 over keys 0 .. p0 + T - 1, grouped by KV head (GQA):
//   q [B, kv_heads, T, group, head_dim], k and v [B, kv_heads, p0 + T, head_dim]
//   -> [B, kv_heads, T, group, head_dim] in out_dtype.
// The queries are processed `block` rows at a time (0: attention_block()); a block's scores are
// computed only against the keys up to its last query, and the causal mask is applied to the
// diagonal tile alone from a shared cached mask, so no [T, T] tensor is ever materialized.
// Differentiable (ATen ops only).
constexpr int64_t kDefaultAttentionBlock = kAttentionBlockRows;  // memory.h
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            int64_t p0, at::ScalarType out_dtype, int64_t block = 0);
// Query rows per attention block used by CausalLM (process-wide; >= 1).
void set_attention_block(int64_t rows);
int64_t attention_block();

class CausalLM {
 public:
  // config.json + model.safetensors (or the sharded index) from `dir`; weights cast to `dtype`
  // (kFloat or kBFloat16). Missing/unexpected tensors and wrong shapes are ModelError.
  static CausalLM load(const std::string& dir, at::ScalarType dtype = at::kFloat);
  // Weights ~ N(0, std^2), norm weights ~ 1 + N(0, std^2); deterministic for a seed.
  static CausalLM random(const ModelConfig& cfg, uint64_t seed, double std = 0.02,
                         at::ScalarType dtype = at::kFloat);
  // From HF-named tensors (validated against expected_tensor_shapes(cfg)).
  CausalLM(ModelConfig cfg, std::map<std::string, at::Tensor> weights,
           at::ScalarType dtype = at::kFloat);
  // Same, with some decoder Linears given as objects (e.g. packed-MX Linears that never hold FP32
  // weights): their "<name>.weight" / "<name>.bias" are not looked up in `weights`, and each
  // object's weight only has to have the config's shape (a stride-0 placeholder is fine).
  CausalLM(ModelConfig cfg, std::map<std::string, at::Tensor> weights,
           std::map<std::string, LinearPtr> linears, at::ScalarType dtype = at::kFloat);

  const ModelConfig& config() const { return cfg_; }
  at::ScalarType dtype() const { return dtype_; }

  // Final hidden states (after model.norm) [B, T, H] of ids [B, T] or [T] (int64).
  at::Tensor hidden_states(const at::Tensor& input_ids) const;
  // Logits [B, T, V] in FP32.
  at::Tensor forward(const at::Tensor& input_ids) const;
  // Summed next-token NLL (predicting ids[:, t+1] from ids[:, :t+1]) as an FP32 scalar, with the
  // lm_head applied `chunk` positions at a time so [B, T, V] logits are never all held at once.
  at::Tensor next_token_nll_sum(const at::Tensor& input_ids, int64_t chunk = 256) const;
  // The same per window: [B] FP32 sums of each row's T - 1 predictions (what a paired bootstrap
  // over evaluation windows needs).
  at::Tensor next_token_nll_rows(const at::Tensor& input_ids, int64_t chunk = 256) const;
  // Mean of the above over the B * (T - 1) predictions: the training loss.
  at::Tensor next_token_loss(const at::Tensor& input_ids, int64_t chunk = 256) const;

  // Incremental decoding: per layer the keys (after RoPE) and values of the positions seen so far,
  // [B, kv_heads, length, head_dim] each.
  struct KVCache {
    std::vector<at::Tensor> k, v;
    int64_t length = 0;
  };
  // Logits (FP32) of ids [B, T] (or [T]) at positions cache.length .. cache.length + T - 1, each
  // attending to the cached positions and to the new ones up to itself; appends the new keys and
  // values to `cache`. last_only: logits of the last position only ([B, 1, V]), else [B, T, V].
  // With an empty cache the logits equal forward()'s up to summation order.
  at::Tensor forward_cached(const at::Tensor& input_ids, KVCache& cache,
                            bool last_only = true) const;

  // The decoder Linears by HF name (7 per layer, model order).
  const std::vector<std::string>& linear_names() const { return linear_names_; }
  LinearPtr linear(const std::string& name) const;
  void set_linear(const std::string& name, LinearPtr layer);

  // Folds a randomized Hadamard rotation of the residual stream into the weights (every norm's
  // scale folded into the Linears that read it, the norms left at 1, the embedding and lm_head
  // untied) and adds an online Hadamard transform before each down_proj (its weight folded to
  // match), as QuaRot does. The FP32 function is unchanged up to rounding; MX quantization then
  // sees rotated weights and activations. Needs plain Linears (rotate before wrapping) and
  // hidden and intermediate sizes with a Hadamard construction (rotate.h); ModelError otherwise.
  void rotate_hadamard(uint64_t seed);
  // The seed of rotate_hadamard, or nullopt for an unrotated model.
  std::optional<uint64_t> rotation_seed() const { return rotation_seed_; }

  // The checkpoint tensors by HF name (embeddings, norms, each Linear's current weight/bias,
  // lm_head.weight when untied).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  void set_requires_grad(bool requires_grad);
  // Writes config.json and model.safetensors into `dir` (created if needed), tensors in `dtype`
  // (kBFloat16, kHalf or kFloat); each file written to a temporary and renamed. A rotated model
  // is refused (its online transform has no place in a Hugging Face checkpoint).
  void save(const std::string& dir, at::ScalarType dtype = at::kBFloat16) const;

 private:
  struct Layer {
    at::Tensor input_norm, post_norm, q_norm, k_norm;
    std::array<LinearPtr, 7> lin;  // q, k, v, o, gate, up, down
  };
  at::Tensor rope_cos_sin(int64_t seq, bool cos) const;
  at::Tensor hidden_impl(const at::Tensor& input_ids, KVCache* cache) const;

  ModelConfig cfg_;
  at::ScalarType dtype_;
  at::Tensor embed_, final_norm_, lm_head_;  // lm_head_ aliases embed_ when tied
  std::vector<Layer> layers_;
  std::vector<std::string> linear_names_;
  std::map<std::string, std::pair<size_t, size_t>> linear_index_;  // name -> (layer, slot)
  at::Tensor inv_freq_;                                            // [head_dim / 2] FP32
  std::shared_ptr<const HadamardTransform> down_hadamard_;         // before down_proj, when rotated
  std::optional<uint64_t> rotation_seed_;
};

}  // namespace dmx::quant
