// Forward throughput of the LibTorch model at a SmolLM2-135M-shaped random model (the published
// config.json: 30 layers, hidden 576, 9 heads / 3 kv heads, MLP 1536, vocab 49152, tied).
// Counters: tokens/s and GFLOP/s (2 x MACs of every matmul incl. attention and lm_head).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include "dmx/quant/config.h"
#include "dmx/quant/model.h"

namespace {

const char* kSmolLM2_135M = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0,
  "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152})";

const dmx::quant::CausalLM& model() {
  static dmx::quant::CausalLM m = dmx::quant::CausalLM::random(
      dmx::quant::parse_config(kSmolLM2_135M, "SmolLM2-135M"), 1, 0.02);
  return m;
}

// FLOPs of one forward over B x T tokens: projections, causal attention (QK^T and PV over the
// full T x T product the implementation computes), lm_head.
double forward_flops(const dmx::quant::ModelConfig& c, int64_t B, int64_t T) {
  const double H = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
  const double per_token_linear = H * q + 2 * H * kv + q * H + 3 * H * ff;
  const double attn = 2.0 * c.num_attention_heads * c.head_dim * T;  // per token: QK^T + PV
  const double head = H * c.vocab_size;
  return 2.0 * B * T * (c.num_hidden_layers * (per_token_linear + attn) + head);
}

void BM_ForwardSmolLM2_135M(benchmark::State& state) {
  const int64_t B = state.range(0), T = state.range(1);
  const auto& m = model();
  at::NoGradGuard no_grad;
  at::Tensor ids = at::randint(m.config().vocab_size, {B, T}, at::kLong);
  for (auto _ : state) {
    at::Tensor logits = m.forward(ids);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(iters * B * T, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(iters * forward_flops(m.config(), B, T) / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["threads"] = at::get_num_threads();
}
BENCHMARK(BM_ForwardSmolLM2_135M)
    ->Args({1, 128})
    ->Args({1, 512})
    ->Args({4, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
