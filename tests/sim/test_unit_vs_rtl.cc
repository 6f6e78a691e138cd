// The C++ unit model (sim_unit.h) against the Verilated RTL unit (rtl/mx_dot_unit.v, target
// dmx_rtl_vunit, default parameters): same in_ready / out_valid / acc_out / tag_out every cycle
// under random traffic and random back-pressure. The model's depth is the RTL's STAGES parameter
// (DMX_RTL_STAGES, read from the Verilog by CMake); the first test re-measures it on the RTL.
#include <dmx/sim_unit.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "Vmx_dot_unit.h"
#include "verilated.h"

using namespace dmx;
using namespace dmx::sim;

namespace {

struct Rtl {
  Vmx_dot_unit top;
  void drive(const UnitInputs& in) {
    top.in_valid = in.in_valid;
    top.fmt_a = uint8_t(in.fmt_a);
    top.fmt_b = uint8_t(in.fmt_b);
    top.scale_a = in.scale_a;
    top.scale_b = in.scale_b;
    for (int w = 0; w < 8; ++w) {
      uint32_t a = 0, b = 0;
      for (int j = 0; j < 4; ++j) {
        a |= uint32_t(in.codes_a[4 * w + j]) << (8 * j);
        b |= uint32_t(in.codes_b[4 * w + j]) << (8 * j);
      }
      top.codes_a[w] = a;
      top.codes_b[w] = b;
    }
    top.acc_in = in.acc_in;
    top.tag_in = in.tag_in;
    top.out_ready = in.out_ready;
    top.eval();
  }
  void edge() {
    top.clk = 1;
    top.eval();
    top.clk = 0;
    top.eval();
  }
  void reset() {
    top.clk = 0;
    top.rst_n = 0;
    top.in_valid = 0;
    top.out_ready = 1;
    top.eval();
    edge();
    edge();
    top.rst_n = 1;
    top.eval();
  }
};

UnitInputs random_inputs(std::mt19937& rng, int valid_pct, int ready_pct) {
  UnitInputs in;
  in.in_valid = int(rng() % 100) < valid_pct;
  in.out_ready = int(rng() % 100) < ready_pct;
  in.fmt_a = kAllFormats[rng() % kNumFormats];
  in.fmt_b = kAllFormats[rng() % kNumFormats];
  auto scale = [&] { return rng() % 50 == 0 ? uint8_t(0xFF) : uint8_t(100 + rng() % 50); };
  in.scale_a = scale();
  in.scale_b = scale();
  const int bits_a = format_bits(in.fmt_a), bits_b = format_bits(in.fmt_b);
  for (int i = 0; i < kBlockSize; ++i) {
    in.codes_a[i] = uint8_t(rng() & ((1u << bits_a) - 1));
    in.codes_b[i] = uint8_t(rng() & ((1u << bits_b) - 1));
  }
  std::normal_distribution<float> nd(0, 1000);
  in.acc_in = rng() % 20 == 0 ? 0x7F800000u : fp32_bits(nd(rng));
  in.tag_in = uint16_t(rng());
  return in;
}

TEST(SimUnitVsRtl, RtlLatencyEqualsStagesParameter) {
  Rtl rtl;
  rtl.reset();
  std::mt19937 rng(3);
  UnitInputs in = random_inputs(rng, 100, 100);
  rtl.drive(in);
  ASSERT_TRUE(rtl.top.in_ready);
  rtl.edge();
  in.in_valid = false;
  int latency = 1;
  for (; latency < 64; ++latency) {
    rtl.drive(in);
    if (rtl.top.out_valid) break;
    rtl.edge();
  }
  EXPECT_EQ(latency, DMX_RTL_STAGES) << "the RTL's latency differs from its STAGES parameter";
}

void run_random(unsigned seed, int cycles, int valid_pct, int ready_pct) {
  Rtl rtl;
  rtl.reset();
  MxDotUnitModel model(DMX_RTL_STAGES);
  std::mt19937 rng(seed);
  int outputs = 0;
  for (int c = 0; c < cycles; ++c) {
    const UnitInputs in = random_inputs(rng, valid_pct, ready_pct);
    rtl.drive(in);
    ASSERT_EQ(bool(rtl.top.in_ready), model.in_ready(in.out_ready)) << "seed " << seed << " cycle " << c;
    ASSERT_EQ(bool(rtl.top.out_valid), model.out_valid()) << "seed " << seed << " cycle " << c;
    if (model.out_valid()) {
      ASSERT_EQ(rtl.top.tag_out, model.tag_out()) << "seed " << seed << " cycle " << c;
      ASSERT_EQ(rtl.top.acc_out, model.acc_out())
          << "seed " << seed << " cycle " << c << " tag " << model.tag_out();
      outputs += in.out_ready;
    }
    rtl.edge();
    model.clock(in);
  }
  // The traffic really flowed (about min(valid, ready) percent of the cycles carry a result).
  EXPECT_GT(outputs, cycles * std::min(valid_pct, ready_pct) / 200) << "seed " << seed;
}

TEST(SimUnitVsRtl, CycleAndBitEqualFullThroughput) { run_random(11, 20000, 100, 100); }
TEST(SimUnitVsRtl, CycleAndBitEqualRandomBackPressure) { run_random(12, 20000, 70, 60); }
TEST(SimUnitVsRtl, CycleAndBitEqualHeavyStall) { run_random(13, 20000, 90, 20); }

}  // namespace
