// The C++ mx_dot_unit model: arithmetic against golden, latency, throughput and back-pressure.
#include <dmx/sim_unit.h>
#include <gtest/gtest.h>

#include <deque>
#include <random>

using namespace dmx;
using namespace dmx::sim;

namespace {

UnitInputs random_issue(std::mt19937& rng) {
  UnitInputs in;
  in.in_valid = true;
  in.fmt_a = kAllFormats[rng() % kNumFormats];
  in.fmt_b = kAllFormats[rng() % kNumFormats];
  in.scale_a = uint8_t(110 + rng() % 30);
  in.scale_b = uint8_t(110 + rng() % 30);
  const int bits_a = format_bits(in.fmt_a), bits_b = format_bits(in.fmt_b);
  for (int i = 0; i < kBlockSize; ++i) {
    in.codes_a[i] = uint8_t(rng() & ((1u << bits_a) - 1));
    in.codes_b[i] = uint8_t(rng() & ((1u << bits_b) - 1));
  }
  std::normal_distribution<float> nd(0, 100);
  in.acc_in = fp32_bits(nd(rng));
  in.tag_in = uint16_t(rng());
  return in;
}

TEST(SimUnit, ResultIsAccPlusGoldenDotBlock) {
  const unsigned seed = 1234;
  std::mt19937 rng(seed);
  for (int t = 0; t < 2000; ++t) {
    UnitInputs in = random_issue(rng);
    const float dot = dot_block(in.fmt_a, in.scale_a, in.codes_a.data(), in.fmt_b, in.scale_b,
                                in.codes_b.data());
    const float want = fp32_from_bits(in.acc_in) + dot;
    const uint32_t got = unit_result(in);
    if (std::isnan(want))
      EXPECT_EQ(got, 0x7FC00000u) << "seed " << seed << " t " << t;
    else
      EXPECT_EQ(got, fp32_bits(want)) << "seed " << seed << " t " << t;
  }
}

TEST(SimUnit, LatencyIsStagesAndOneIssuePerCycle) {
  for (int stages = 1; stages <= 6; ++stages) {
    MxDotUnitModel u(stages);
    std::mt19937 rng(7);
    std::deque<std::pair<int, uint32_t>> expect;  // (cycle it must appear, result)
    for (int cycle = 0; cycle < 50; ++cycle) {
      if (u.out_valid()) {
        ASSERT_FALSE(expect.empty());
        EXPECT_EQ(expect.front().first, cycle) << "stages " << stages;
        EXPECT_EQ(expect.front().second, u.acc_out());
        expect.pop_front();
      }
      UnitInputs in = random_issue(rng);
      in.in_valid = cycle < 40;
      ASSERT_TRUE(u.in_ready(true));
      if (in.in_valid) expect.push_back({cycle + stages, unit_result(in)});
      u.clock(in);
    }
    EXPECT_TRUE(expect.empty());
  }
}

// Back-pressure with a bubble in the pipe: the output holds while out_ready is low, and the
// empty slice lets one more issue in (register slices collapse bubbles, like mx_pipe_stage.v).
TEST(SimUnit, BackPressureHoldsOutputAndCollapsesBubbles) {
  MxDotUnitModel u(3, false);
  u.clock_timing(true, 1, true);   // slices: [1 - -]
  u.clock_timing(false, 0, true);  // [- 1 -]
  u.clock_timing(true, 2, true);   // [2 - 1]
  ASSERT_TRUE(u.out_valid());
  EXPECT_EQ(u.tag_out(), 1);
  EXPECT_TRUE(u.in_ready(false));   // the bubble absorbs one shift
  EXPECT_TRUE(u.clock_timing(true, 3, false));  // [3 2 1]: output held
  EXPECT_EQ(u.tag_out(), 1);
  EXPECT_FALSE(u.in_ready(false));  // full and stalled
  EXPECT_FALSE(u.clock_timing(true, 4, false));
  EXPECT_EQ(u.tag_out(), 1);
  EXPECT_TRUE(u.clock_timing(true, 4, true));  // [4 3 2]
  EXPECT_EQ(u.tag_out(), 2);
  u.reset();
  EXPECT_FALSE(u.out_valid());
}

}  // namespace
