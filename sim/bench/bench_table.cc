// Google Benchmark: time to produce a whole-model cost table (Llama-3.2-1B shape: 16 layers x 7
// GEMMs x 36 format pairs, prefill and decode) by composing simulated tiles. Each iteration
// starts from an empty tile cache, so the time includes every tile simulation the table needs.
#include <benchmark/benchmark.h>

#include "dmx/sim.h"

namespace {

dmx::sim::ModelShape llama32_1b() {
  // meta-llama/Llama-3.2-1B config.json
  dmx::sim::ModelShape m;
  m.name = "llama";
  m.hidden_size = 2048;
  m.intermediate_size = 8192;
  m.num_hidden_layers = 16;
  m.num_attention_heads = 32;
  m.num_key_value_heads = 8;
  m.head_dim = 64;
  return m;
}

void BM_LlamaTable(benchmark::State& state, const char* arch_file) {
  const auto arch = dmx::sim::load_arch(std::string(DMX_SOURCE_DIR) + "/sim/configs/" + arch_file);
  const int64_t tokens = state.range(0);
  size_t rows = 0;
  int64_t sims = 0;
  for (auto _ : state) {
    dmx::sim::TileCache cache;
    auto table = dmx::sim::cost_table(llama32_1b(), arch, tokens, {}, &cache);
    rows = table.size();
    sims = cache.simulations();
    benchmark::DoNotOptimize(table.data());
  }
  state.counters["rows"] = double(rows);
  state.counters["tile_sims"] = double(sims);
}
BENCHMARK_CAPTURE(BM_LlamaTable, edge, "edge_npu.json")
    ->Arg(512)->Arg(2048)->Unit(benchmark::kSecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_LlamaTable, datacenter, "datacenter.json")
    ->Arg(512)->Arg(2048)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
