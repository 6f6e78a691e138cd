// Forward throughput of the LibTorch model:
//  - a SmolLM2-135M-shaped random model (the published config.json: 30 layers, hidden 576,
//    9 heads / 3 kv heads, MLP 1536, vocab 49152, tied): logits of B x T tokens (`forward`), and
//    the evaluation path at 2048 tokens (`nll`: next_token_nll_sum, lm_head in chunks, as
//    dmx-eval);
//  - the shipped models/llama-tiny on dmx-eval's path at 128- and 2048-token windows.
// Each case runs under dmx::quant::configure_threads(threads) (0: the default for the work size),
// the policy every quant tool uses. Counters: tokens/s, GFLOP/s (2 x MACs of every matmul incl.
// causal attention and lm_head), threads (what was chosen), sys_s (system CPU seconds per
// iteration, getrusage), sys_share (system CPU time / wall time of the timed loop).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "dmx/quant/config.h"
#include "dmx/quant/model.h"
#include "dmx/quant/threads.h"

namespace {

const char* kSmolLM2_135M = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0,
  "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "intermediate_size": 1536,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152})";

const dmx::quant::CausalLM& smollm2() {
  static dmx::quant::CausalLM m = dmx::quant::CausalLM::random(
      dmx::quant::parse_config(kSmolLM2_135M, "SmolLM2-135M"), 1, 0.02);
  return m;
}

const dmx::quant::CausalLM* llama_tiny() {
  static std::unique_ptr<dmx::quant::CausalLM> m;
  if (!m && std::filesystem::is_directory(DMX_QUANT_MODELS "/llama-tiny"))
    m = std::make_unique<dmx::quant::CausalLM>(
        dmx::quant::CausalLM::load(DMX_QUANT_MODELS "/llama-tiny"));
  return m.get();
}

// FLOPs of one forward over B x T tokens: projections, causal attention (QK^T and PV over the
// keys up to each query: T (T + 1) / 2 per head), lm_head.
double forward_flops(const dmx::quant::ModelConfig& c, int64_t B, int64_t T) {
  const double H = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
  const double per_token_linear = H * q + 2 * H * kv + q * H + 3 * H * ff;
  const double attn = 2.0 * c.num_attention_heads * c.head_dim * (T + 1) / 2.0;  // per token
  const double head = H * c.vocab_size;
  return 2.0 * B * T * (c.num_hidden_layers * (per_token_linear + attn) + head);
}

double sys_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_stime.tv_sec) + 1e-6 * double(u.ru_stime.tv_usec);
}

enum Mode { kForward = 0, kNll = 1 };

// Args: B, T, threads (0: default), mode, attention block rows (0: the default).
void run(benchmark::State& state, const dmx::quant::CausalLM& m) {
  const int64_t B = state.range(0), T = state.range(1), threads = state.range(2);
  const auto mode = static_cast<Mode>(state.range(3));
  const int64_t block = state.range(4);
  const auto choice = dmx::quant::configure_threads(
      threads, dmx::quant::thread_work_size(B * T, m.config().hidden_size));
  const int64_t saved_block = dmx::quant::attention_block();
  if (block > 0) dmx::quant::set_attention_block(block);
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(42);
  const at::Tensor ids = at::randint(m.config().vocab_size, {B, T}, gen, at::kLong);
  {  // one untimed pass: the heap grows to its steady size here, not inside the timed loop
    at::Tensor warm = mode == kForward ? m.forward(ids) : m.next_token_nll_sum(ids);
    benchmark::DoNotOptimize(warm.data_ptr());
  }
  const double sys0 = sys_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    at::Tensor out = mode == kForward ? m.forward(ids) : m.next_token_nll_sum(ids);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double sys = sys_seconds() - sys0;
  dmx::quant::set_attention_block(saved_block);
  const double iters = static_cast<double>(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(iters * B * T, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(iters * forward_flops(m.config(), B, T) / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["threads"] = choice.threads;
  state.counters["sys_s"] = sys / iters;
  state.counters["sys_share"] = wall > 0 ? sys / wall : 0.0;
}

void BM_SmolLM2_135M(benchmark::State& state) { run(state, smollm2()); }
void BM_LlamaTiny(benchmark::State& state) {
  const dmx::quant::CausalLM* m = llama_tiny();
  if (!m) {
    state.SkipWithError("models/llama-tiny not found");
    return;
  }
  run(state, *m);
}

BENCHMARK(BM_SmolLM2_135M)
    ->ArgNames({"B", "T", "threads", "nll", "block"})
    ->Args({1, 128, 1, kForward, 0})
    ->Args({1, 128, 2, kForward, 0})
    ->Args({1, 512, 1, kForward, 0})
    ->Args({1, 512, 2, kForward, 0})
    ->Args({1, 512, 0, kForward, 0})
    ->Args({4, 256, 1, kForward, 0})
    ->Args({4, 256, 2, kForward, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_SmolLM2_135M)
    ->ArgNames({"B", "T", "threads", "nll", "block"})
    ->Args({1, 2048, 1, kNll, 0})
    ->Args({1, 2048, 2, kNll, 0})
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_LlamaTiny)
    ->ArgNames({"B", "T", "threads", "nll", "block"})
    ->Args({1, 128, 1, kNll, 0})
    ->Args({1, 128, 2, kNll, 0})
    ->Args({1, 128, 0, kNll, 0})
    ->Args({1, 512, 1, kNll, 0})
    ->Args({1, 512, 2, kNll, 0})
    ->Args({1, 512, 0, kNll, 0})
    ->Args({1, 2048, 1, kNll, 0})
    ->Args({1, 2048, 2, kNll, 0})
    ->Args({1, 2048, 0, kNll, 0})
    ->Args({1, 2048, 1, kNll, 64})
    ->Args({1, 2048, 1, kNll, 128})
    ->Args({1, 2048, 1, kNll, 512})
    ->Args({1, 2048, 1, kNll, 2048})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
