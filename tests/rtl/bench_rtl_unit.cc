// Simulation speed of the Verilated mx_dot_unit: block steps per second at full rate
// (one block per cycle, out_ready high), with and without the golden comparison.
#include <benchmark/benchmark.h>

#include <vector>

#include "rtl_test_util.h"

namespace dmx::rtl::test {
namespace {

std::vector<BlockStep> make_steps(MxFormat fa, MxFormat fb, size_t n) {
  StepGenerator gen(fa, fb, 12345);
  std::vector<BlockStep> v;
  for (size_t i = 0; i < n; ++i) v.push_back(gen.next(Dist(i % 4)));
  return v;
}

// Raw model speed: one issue per cycle, outputs only counted.
void BM_VerilatedBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  const std::vector<BlockStep> steps = make_steps(fa, fb, 4096);
  RtlUnit unit;
  size_t i = 0;
  uint64_t produced = 0;
  for (auto _ : state) {
    const CycleResult r = unit.cycle(&steps[i], true);
    i = (i + 1) % steps.size();
    produced += r.produced;
  }
  benchmark::DoNotOptimize(produced);
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(format_name(fa)) + " x " + format_name(fb));
}
BENCHMARK(BM_VerilatedBlockSteps)
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({4, 4})
    ->Args({5, 5})
    ->Args({0, 4});

// What the testbench does per step: drive, clock, and compare against golden.
void BM_CheckedBlockSteps(benchmark::State& state) {
  const std::vector<BlockStep> steps = make_steps(MxFormat::E4M3, MxFormat::E2M1, 4096);
  RtlUnit unit;
  size_t i = 0;
  uint64_t bad = 0;
  for (auto _ : state) {
    unit.cycle(&steps[i], true);
    bad += golden_step(steps[i]) == 1u;
    i = (i + 1) % steps.size();
  }
  benchmark::DoNotOptimize(bad);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CheckedBlockSteps);

}  // namespace
}  // namespace dmx::rtl::test

BENCHMARK_MAIN();
