// Simulation speed of the Verilated mx_dot_unit in block steps per second (items_per_second),
// today's testbench against the fast one, measured in the same run:
//   BM_Old*   the traced model driven one cycle per call through RtlUnit (the per-step testbench)
//   BM_Fast*  the untraced model driven by FastUnit over arrays of steps, golden checked in batches
// Each benchmark's label names its format pair; all run one core.
#include <benchmark/benchmark.h>

#include <vector>

#include "rtl_test_util.h"

namespace dmx::rtl::test {
namespace {

constexpr size_t kBatch = 4096;

std::vector<BlockStep> make_steps(MxFormat fa, MxFormat fb, size_t n) {
  StepGenerator gen(fa, fb, 12345);
  std::vector<BlockStep> v(n);
  gen.fill(v.data(), n);
  return v;
}

std::string pair_label(MxFormat fa, MxFormat fb) {
  return std::string(format_name(fa)) + " x " + format_name(fb);
}

// ---- Today's testbench ---------------------------------------------------------------------

// Raw model speed: one issue per cycle, outputs only counted.
void BM_OldVerilatedBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  const std::vector<BlockStep> steps = make_steps(fa, fb, kBatch);
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
  state.SetLabel(pair_label(fa, fb));
}
BENCHMARK(BM_OldVerilatedBlockSteps)->Args({0, 0})->Args({1, 1})->Args({4, 4})->Args({5, 5});

// What the random-block tests did per step: StreamChecker (drive, clock, golden per accepted
// step, compare in order) over pre-generated steps.
void BM_OldCheckedBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  const std::vector<BlockStep> steps = make_steps(fa, fb, kBatch);
  RtlUnit unit;
  uint64_t bad = 0;
  for (auto _ : state) {
    StreamChecker checker(unit, 1);
    size_t i = 0;
    checker.run([&](BlockStep& s) {
      if (i == steps.size()) return false;
      s = steps[i++];
      return true;
    });
    bad += checker.mismatches();
  }
  if (bad) state.SkipWithError("mismatch against golden");
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(pair_label(fa, fb));
}
BENCHMARK(BM_OldCheckedBlockSteps)->Args({0, 0})->Args({1, 1})->Args({4, 4})->Args({5, 5});

// ---- The fast testbench ----------------------------------------------------------------------

// Raw model speed: FastUnit streaming a batch (the batch's drain cycles included).
void BM_FastVerilatedBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  const std::vector<BlockStep> steps = make_steps(fa, fb, kBatch);
  std::vector<uint32_t> out(kBatch);
  FastUnit unit;
  for (auto _ : state) {
    const std::string err = unit.run(steps.data(), steps.size(), out.data());
    if (!err.empty()) state.SkipWithError(err.c_str());
  }
  benchmark::DoNotOptimize(out.data());
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(pair_label(fa, fb));
}
BENCHMARK(BM_FastVerilatedBlockSteps)->Args({0, 0})->Args({1, 1})->Args({4, 4})->Args({5, 5});

// Fast model + golden for the whole batch + one compare loop (stimulus pre-generated, as in
// BM_OldCheckedBlockSteps).
void BM_FastCheckedBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  const std::vector<BlockStep> steps = make_steps(fa, fb, kBatch);
  std::vector<uint32_t> out(kBatch), want(kBatch);
  FastUnit unit;
  uint64_t bad = 0;
  for (auto _ : state) {
    const std::string err = unit.run(steps.data(), steps.size(), out.data());
    if (!err.empty()) state.SkipWithError(err.c_str());
    golden_steps(steps.data(), steps.size(), want.data());
    for (size_t i = 0; i < kBatch; ++i) bad += !same_fp32(out[i], want[i]);
  }
  if (bad) state.SkipWithError("mismatch against golden");
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(pair_label(fa, fb));
}
BENCHMARK(BM_FastCheckedBlockSteps)->Args({0, 0})->Args({1, 1})->Args({4, 4})->Args({5, 5});

// The long campaign's whole per-block cost: generate (all five distributions in turn), simulate,
// golden, compare.
void BM_FastCampaignBlockSteps(benchmark::State& state) {
  const MxFormat fa = MxFormat(state.range(0)), fb = MxFormat(state.range(1));
  StepGenerator gen(fa, fb, 777);
  std::vector<BlockStep> steps(kBatch);
  std::vector<uint32_t> out(kBatch), want(kBatch);
  FastUnit unit;
  uint64_t bad = 0, first = 0;
  for (auto _ : state) {
    gen.fill(steps.data(), kBatch, first);
    first += kBatch;
    const std::string err = unit.run(steps.data(), steps.size(), out.data());
    if (!err.empty()) state.SkipWithError(err.c_str());
    golden_steps(steps.data(), steps.size(), want.data());
    for (size_t i = 0; i < kBatch; ++i) bad += !same_fp32(out[i], want[i]);
  }
  if (bad) state.SkipWithError("mismatch against golden");
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(pair_label(fa, fb));
}
BENCHMARK(BM_FastCampaignBlockSteps)->Args({0, 0})->Args({1, 1})->Args({4, 4})->Args({5, 5});

}  // namespace
}  // namespace dmx::rtl::test

BENCHMARK_MAIN();
