// Google Benchmark: time to produce the whole-model cost tables of Llama-3.2-1B that `dmx-sim
// model` writes by default (prefill of 2048 tokens; decode at context 2048 with batch 1 and 8; all
// 36 format pairs; totals), by composing simulated tiles. Each iteration starts from an empty tile
// cache, so the time includes every tile simulation the tables need. Target: under 10 s.
#include <benchmark/benchmark.h>

#include "dmx/sim.h"

namespace {

void BM_LlamaTables(benchmark::State& state, const char* arch_file) {
  const std::string src = DMX_SOURCE_DIR;
  const auto arch = dmx::sim::load_arch(src + "/sim/configs/" + arch_file);
  const auto model = dmx::sim::load_model_config(src + "/tests/sim/data/llama-3.2-1b.json");
  const int64_t tokens = state.range(0);
  using dmx::sim::PhaseKind;
  size_t rows = 0;
  int64_t sims = 0;
  for (auto _ : state) {
    dmx::sim::TileCache cache;
    std::vector<dmx::sim::CostRow> all;
    for (dmx::sim::Phase ph : {dmx::sim::Phase{PhaseKind::Prefill, tokens, 0, 1},
                               dmx::sim::Phase{PhaseKind::Decode, 0, tokens, 1},
                               dmx::sim::Phase{PhaseKind::Decode, 0, tokens, 8}}) {
      auto part = dmx::sim::cost_workload(dmx::sim::decoder_workload(model, ph), arch, {}, &cache);
      all.insert(all.end(), part.begin(), part.end());
    }
    auto totals = dmx::sim::cost_totals(all);
    rows = all.size();
    sims = cache.simulations();
    benchmark::DoNotOptimize(totals.data());
  }
  state.counters["rows"] = double(rows);
  state.counters["tile_sims"] = double(sims);
}
BENCHMARK_CAPTURE(BM_LlamaTables, edge, "edge_npu.json")
    ->Arg(512)
    ->Arg(2048)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_LlamaTables, datacenter, "datacenter.json")
    ->Arg(512)
    ->Arg(2048)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
