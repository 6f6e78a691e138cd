// Block quantization: hand-written edge vectors (expected codes worked out by hand), and random
// blocks against an independent quantizer built from frexp and the grid-search oracle.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <map>
#include <random>

#include "dmx/golden.h"
#include "oracle.h"

using dmx::MxFormat;
using dmx::NonFinitePolicy;
using dmx::Overflow;
using dmx::ScaleRule;

namespace {

struct EdgeCase {
  const char* what;
  MxFormat f;
  ScaleRule rule;
  Overflow ov;
  NonFinitePolicy nf;
  std::map<int, float> values;  // others are +0
  uint8_t scale;
  std::map<int, uint8_t> codes;  // others are 0x00
};

const float kInf = INFINITY;
const float kNaN = NAN;
constexpr auto F = ScaleRule::FLOOR;
constexpr auto SAT = Overflow::SAT;
constexpr auto NS = NonFinitePolicy::NAN_SCALE;

const std::vector<EdgeCase>& edge_cases() {
  static const std::vector<EdgeCase> cases = {
      {"E2M1 max normal", MxFormat::E2M1, F, SAT, NS, {{0, 6.0f}}, 0x7f, {{0, 0x7}}},
      {"E2M1 just above max saturates", MxFormat::E2M1, F, SAT, NS, {{0, 7.0f}}, 0x7f, {{0, 0x7}}},
      {"E2M1 CEIL", MxFormat::E2M1, ScaleRule::CEIL, SAT, NS, {{0, 7.0f}}, 0x80, {{0, 0x6}}},
      {"E2M1 RCEIL", MxFormat::E2M1, ScaleRule::RCEIL, SAT, NS, {{0, 7.0f}}, 0x80, {{0, 0x6}}},
      {"E2M1 EVEN", MxFormat::E2M1, ScaleRule::EVEN, SAT, NS, {{0, 7.0f}}, 0x80, {{0, 0x6}}},
      {"E2M1 ties to even at every spacing", MxFormat::E2M1, F, SAT, NS,
       {{0, 6.0f}, {1, 2.5f}, {2, 0.25f}, {3, 0.75f}, {4, -5.0f}, {5, -0.0f}, {6, 1.25f}},
       0x7f, {{0, 0x7}, {1, 0x4}, {2, 0x0}, {3, 0x2}, {4, 0xe}, {5, 0x8}, {6, 0x2}}},
      {"E4M3 amax just below 2", MxFormat::E4M3, F, SAT, NS, {{0, 0x1.fffffep+0f}}, 0x77,
       {{0, 0x7e}}},
      {"E2M1 amax just below 2^100 (log2f says 100)", MxFormat::E2M1, F, SAT, NS,
       {{0, 0x1.fffffep+99f}, {1, 0x1p+97f}}, 0xe0, {{0, 0x7}, {1, 0x2}}},
      {"E4M3 FLT_MAX", MxFormat::E4M3, F, SAT, NS, {{0, FLT_MAX}}, 0xf6, {{0, 0x7e}}},
      {"INT8 FLT_MAX", MxFormat::INT8, F, SAT, NS, {{0, FLT_MAX}, {1, -FLT_MAX}}, 0xfe,
       {{0, 0x7f}, {1, 0x81}}},
      {"E2M1 FLT_MAX", MxFormat::E2M1, F, SAT, NS, {{0, FLT_MAX}}, 0xfc, {{0, 0x7}}},
      {"E2M1 smallest FP32 subnormal, scale clamps at 2^-127", MxFormat::E2M1, F, SAT, NS,
       {{0, 0x1p-149f}}, 0x00, {{0, 0x0}}},
      {"E4M3 FP32 subnormal 3*2^-130", MxFormat::E4M3, F, SAT, NS, {{0, 0x1.8p-129f}}, 0x00,
       {{0, 0x2c}}},
      {"all zero", MxFormat::E4M3, F, SAT, NS, {}, 0x00, {}},
      {"signed zeros kept", MxFormat::E5M2, F, SAT, NS, {{3, -0.0f}, {4, 0.0f}}, 0x00,
       {{3, 0x80}}},
      {"INT8 has no -0", MxFormat::INT8, F, SAT, NS, {{3, -0.0f}}, 0x00, {}},
      {"NaN makes the scale NaN", MxFormat::E4M3, F, SAT, NS, {{0, 1.0f}, {7, kNaN}}, 0xff, {}},
      {"Inf makes the scale NaN", MxFormat::E2M1, F, SAT, NS, {{0, 1.0f}, {7, -kInf}}, 0xff, {}},
      {"E5M2 element policy, Inf saturates", MxFormat::E5M2, F, SAT, NonFinitePolicy::ELEMENT,
       {{0, kInf}, {1, 1.0f}}, 0x70, {{0, 0x7b}, {1, 0x78}}},
      {"E5M2 element policy, Inf kept (OVF)", MxFormat::E5M2, F, Overflow::OVF,
       NonFinitePolicy::ELEMENT, {{0, -kInf}, {1, 1.0f}}, 0x70, {{0, 0xfc}, {1, 0x78}}},
      {"E4M3 element policy, NaN element", MxFormat::E4M3, F, SAT, NonFinitePolicy::ELEMENT,
       {{0, kNaN}, {1, 1.0f}}, 0x77, {{0, 0x7f}, {1, 0x78}}},
      {"E2M1 element policy falls back to NaN scale", MxFormat::E2M1, F, SAT,
       NonFinitePolicy::ELEMENT, {{0, kNaN}, {1, 1.0f}}, 0xff, {}},
      {"E4M3 300 FLOOR", MxFormat::E4M3, F, SAT, NS, {{0, 300.0f}}, 0x7f, {{0, 0x79}}},
      {"E4M3 300 CEIL", MxFormat::E4M3, ScaleRule::CEIL, SAT, NS, {{0, 300.0f}}, 0x80, {{0, 0x71}}},
      {"E4M3 300 RCEIL", MxFormat::E4M3, ScaleRule::RCEIL, SAT, NS, {{0, 300.0f}}, 0x7f, {{0, 0x79}}},
      {"E4M3 300 EVEN", MxFormat::E4M3, ScaleRule::EVEN, SAT, NS, {{0, 300.0f}}, 0x7f, {{0, 0x79}}},
      {"E4M3 500 FLOOR saturates", MxFormat::E4M3, F, SAT, NS, {{0, 500.0f}}, 0x7f, {{0, 0x7e}}},
      {"E4M3 500 RCEIL", MxFormat::E4M3, ScaleRule::RCEIL, SAT, NS, {{0, 500.0f}}, 0x80, {{0, 0x78}}},
      {"E4M3 500 EVEN", MxFormat::E4M3, ScaleRule::EVEN, SAT, NS, {{0, 500.0f}}, 0x80, {{0, 0x78}}},
      {"E4M3 500 CEIL", MxFormat::E4M3, ScaleRule::CEIL, SAT, NS, {{0, 500.0f}}, 0x80, {{0, 0x78}}},
      {"E4M3 470 RCEIL", MxFormat::E4M3, ScaleRule::RCEIL, SAT, NS, {{0, 470.0f}}, 0x80, {{0, 0x77}}},
      {"E4M3 470 EVEN keeps the binade", MxFormat::E4M3, ScaleRule::EVEN, SAT, NS, {{0, 470.0f}},
       0x7f, {{0, 0x7e}}},
      {"E4M3 500 FLOOR OVF -> NaN", MxFormat::E4M3, F, Overflow::OVF, NS, {{0, 500.0f}}, 0x7f,
       {{0, 0x7f}}},
      {"E4M3 464 FLOOR OVF tie stays finite", MxFormat::E4M3, F, Overflow::OVF, NS,
       {{0, 464.0f}}, 0x7f, {{0, 0x7e}}},
      {"E5M2 65000 FLOOR OVF -> Inf", MxFormat::E5M2, F, Overflow::OVF, NS, {{0, -65000.0f}},
       0x7f, {{0, 0xfc}}},
      {"E5M2 65000 FLOOR SAT", MxFormat::E5M2, F, SAT, NS, {{0, -65000.0f}}, 0x7f, {{0, 0xfb}}},
      {"E3M2 ties and subnormals", MxFormat::E3M2, F, SAT, NS,
       {{0, 28.0f}, {1, 0.03125f}, {2, 0.09375f}, {3, 26.0f}, {4, -0.0625f}}, 0x7f,
       {{0, 0x1f}, {1, 0x00}, {2, 0x02}, {3, 0x1e}, {4, 0x21}}},
      {"E2M3 ties and subnormals", MxFormat::E2M3, F, SAT, NS,
       {{0, 7.5f}, {1, 0.0625f}, {2, 0.1875f}, {3, 7.25f}, {4, -0.125f}}, 0x7f,
       {{0, 0x1f}, {1, 0x00}, {2, 0x02}, {3, 0x1e}, {4, 0x21}}},
      {"INT8 ties", MxFormat::INT8, F, SAT, NS,
       {{0, 1.0f}, {1, 0.5f / 64}, {2, 1.5f / 64}, {3, -2.5f / 64}}, 0x7f,
       {{0, 0x40}, {1, 0x00}, {2, 0x02}, {3, 0xfe}}},
  };
  return cases;
}

TEST(QuantizeEdges, HandWrittenVectors) {
  for (const EdgeCase& c : edge_cases()) {
    SCOPED_TRACE(c.what);
    float v[32] = {};
    for (auto& [i, x] : c.values) v[i] = x;
    dmx::QuantizeOptions opt;
    opt.scale_rule = c.rule;
    opt.overflow = c.ov;
    opt.non_finite = c.nf;
    const dmx::MxBlock b = dmx::quantize_block(c.f, v, opt);
    EXPECT_EQ(int(b.scale), int(c.scale));
    for (int i = 0; i < 32; ++i) {
      const auto it = c.codes.find(i);
      const int want = it == c.codes.end() ? 0 : it->second;
      EXPECT_EQ(int(b.codes[i]), want) << "element " << i;
    }
  }
}

// An independent quantizer: the scale from frexp in double, elements from the grid search.
int ref_exponent(MxFormat f, double amax, ScaleRule rule) {
  const oracle::Spec s = oracle::spec(static_cast<int>(f));
  const int emax = s.is_int ? 0 : static_cast<int>(std::floor(std::log2(s.max_normal)));
  if (amax == 0) return -127;
  int e;
  const double m = std::frexp(amax, &e);  // amax = m 2^e, m in [0.5,1)
  int r = 0;
  if (rule == ScaleRule::FLOOR) r = e - 1 - emax;
  if (rule == ScaleRule::CEIL) r = (m == 0.5 ? e - 1 : e) - emax;
  if (rule == ScaleRule::RCEIL) {
    r = -400;
    while (amax > std::ldexp(s.max_normal, r)) ++r;
  }
  return std::clamp(r, -127, 127);
}

TEST(QuantizeRandom, MatchesIndependentQuantizer) {
  const unsigned seed = 1234;
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_int_distribution<int> exps(-140, 120);
  for (MxFormat f : dmx::kAllFormats) {
    const oracle::Encoder enc(static_cast<int>(f));
    for (ScaleRule rule : {ScaleRule::FLOOR, ScaleRule::CEIL, ScaleRule::RCEIL}) {
      for (int trial = 0; trial < 3000; ++trial) {
        float v[32];
        const int dist = trial % 3;
        const int e = exps(rng);
        for (float& x : v) {
          if (dist == 0) x = std::ldexp(gauss(rng), e);
          if (dist == 1) x = oracle::from_bits(rng() & 0xff7fffffu);  // random finite bits
          if (dist == 2) x = std::ldexp(std::round(gauss(rng) * 8) / 8, e % 20);  // tie-heavy
        }
        dmx::QuantizeOptions opt;
        opt.scale_rule = rule;
        const dmx::MxBlock b = dmx::quantize_block(f, v, opt);
        double amax = 0;
        for (float x : v) amax = std::max(amax, std::fabs(static_cast<double>(x)));
        const int s = ref_exponent(f, amax, rule);
        ASSERT_EQ(int(b.scale), s + 127)
            << "seed " << seed << " " << dmx::format_name(f) << " rule "
            << dmx::scale_rule_name(rule) << " trial " << trial;
        float deq[32];
        dmx::dequantize_block(f, b, deq);
        for (int i = 0; i < 32; ++i) {
          const uint8_t want = enc.encode(std::ldexp(static_cast<double>(v[i]), -s));
          ASSERT_EQ(int(b.codes[i]), int(want))
              << "seed " << seed << " " << dmx::format_name(f) << " trial " << trial << " i " << i
              << " x=" << std::hexfloat << v[i];
          const float d = static_cast<float>(std::ldexp(oracle::decode(static_cast<int>(f), want), s));
          ASSERT_TRUE(oracle::same(deq[i], d)) << "dequantize, seed " << seed << " trial " << trial;
        }
      }
    }
  }
}

TEST(QuantizeRandom, NanScaleDequantizesToNaN) {
  dmx::MxBlock b;
  b.scale = 0xff;
  float out[32];
  dmx::dequantize_block(MxFormat::E2M1, b, out);
  for (float x : out) EXPECT_TRUE(std::isnan(x));
  EXPECT_TRUE(std::isnan(dmx::decode_scale(0xff)));
  EXPECT_EQ(dmx::decode_scale(0x00), 0x1p-127f);
  EXPECT_EQ(dmx::decode_scale(0xfe), 0x1p127f);
}

TEST(QuantizeRandom, RowHelpersAndPadding) {
  std::vector<float> v(70, 1.5f);
  EXPECT_EQ(dmx::padded_length(70), 96u);
  v.resize(dmx::padded_length(v.size()), 0.0f);
  std::vector<uint8_t> scales(3), codes(96);
  dmx::quantize_row(MxFormat::E4M3, v.data(), v.size(), scales.data(), codes.data());
  std::vector<float> back(96);
  dmx::dequantize_row(MxFormat::E4M3, scales.data(), codes.data(), 96, back.data());
  for (int i = 0; i < 70; ++i) EXPECT_EQ(back[i], 1.5f);
  for (int i = 70; i < 96; ++i) EXPECT_EQ(back[i], 0.0f);
  EXPECT_THROW(dmx::quantize_row(MxFormat::E4M3, v.data(), 70, scales.data(), codes.data()),
               std::invalid_argument);
}

}  // namespace
