// dot_exact against exact GMP rationals; dot_blocked against its definition (each block exact
// in GMP, rounded once, then a float chain), for every operand format pair.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "dmx/golden.h"
#include "oracle.h"

using dmx::MxFormat;

namespace {

struct Operand {
  MxFormat f;
  std::vector<uint8_t> scales, codes;
  dmx::MxVector view() const { return {f, scales.data(), codes.data()}; }
};

bool finite_code(MxFormat f, uint8_t c) {
  return std::isfinite(oracle::decode(static_cast<int>(f), c));
}

// Random operand of nblocks blocks: codes uniform over finite codes, scales in [lo, hi].
Operand random_operand(std::mt19937& rng, MxFormat f, int nblocks, int lo, int hi) {
  Operand o{f, std::vector<uint8_t>(nblocks), std::vector<uint8_t>(nblocks * 32)};
  std::uniform_int_distribution<int> sd(lo, hi);
  for (auto& s : o.scales) s = static_cast<uint8_t>(sd(rng));
  const int n = oracle::code_count(static_cast<int>(f));
  for (auto& c : o.codes) {
    do c = static_cast<uint8_t>(rng() % n);
    while (!finite_code(f, c));
  }
  return o;
}

mpq_class block_exact(const Operand& a, const Operand& b, int j) {
  mpq_class sum = 0;
  for (int i = j * 32; i < (j + 1) * 32; ++i)
    sum += oracle::exact(oracle::decode(static_cast<int>(a.f), a.codes[i])) *
           oracle::exact(oracle::decode(static_cast<int>(b.f), b.codes[i]));
  return sum * oracle::pow2q(static_cast<long>(a.scales[j]) + b.scales[j] - 254);
}

// IEEE: an exact zero sum is -0 only if every term is -0.
bool all_terms_negative_zero(const Operand& a, const Operand& b, int j0, int j1) {
  for (int i = j0 * 32; i < j1 * 32; ++i) {
    const double p = oracle::decode(static_cast<int>(a.f), a.codes[i]) *
                     oracle::decode(static_cast<int>(b.f), b.codes[i]);
    if (!(p == 0 && std::signbit(p))) return false;
  }
  return true;
}

float ref_block(const Operand& a, const Operand& b, int j) {
  const mpq_class s = block_exact(a, b, j);
  if (s == 0) return all_terms_negative_zero(a, b, j, j + 1) ? -0.0f : 0.0f;
  return oracle::round_rational(s);
}

float ref_blocked(const Operand& a, const Operand& b, int nblocks) {
  float acc = ref_block(a, b, 0);
  for (int j = 1; j < nblocks; ++j) acc = acc + ref_block(a, b, j);
  return acc;
}

float ref_exact(const Operand& a, const Operand& b, int nblocks) {
  mpq_class s = 0;
  for (int j = 0; j < nblocks; ++j) s += block_exact(a, b, j);
  if (s == 0) return all_terms_negative_zero(a, b, 0, nblocks) ? -0.0f : 0.0f;
  return oracle::round_rational(s);
}

class DotPairs : public testing::TestWithParam<std::tuple<MxFormat, MxFormat>> {};

TEST_P(DotPairs, ExactAndBlockedMatchRationalArithmetic) {
  const auto [fa, fb] = GetParam();
  const unsigned seed = 100 + 10 * static_cast<int>(fa) + static_cast<int>(fb);
  std::mt19937 rng(seed);
  // Scale ranges: ordinary, both ends of E8M0 (underflow to subnormal/zero, overflow to Inf).
  const int ranges[][4] = {{117, 137, 117, 137}, {0, 3, 0, 3}, {250, 254, 250, 254},
                           {0, 254, 0, 254}, {0, 0, 254, 254}};
  for (const auto& r : ranges) {
    for (int trial = 0; trial < 60; ++trial) {
      const int nblocks = 1 + trial % 4;
      const Operand a = random_operand(rng, fa, nblocks, r[0], r[1]);
      const Operand b = random_operand(rng, fb, nblocks, r[2], r[3]);
      const size_t n = nblocks * 32;
      const float got_e = dmx::dot_exact(a.view(), b.view(), n);
      const float want_e = ref_exact(a, b, nblocks);
      ASSERT_TRUE(oracle::same(got_e, want_e))
          << "dot_exact seed " << seed << " scales [" << r[0] << "," << r[1] << "] trial " << trial
          << " got " << std::hexfloat << got_e << " want " << want_e;
      const float got_b = dmx::dot_blocked(a.view(), b.view(), n);
      const float want_b = ref_blocked(a, b, nblocks);
      ASSERT_TRUE(oracle::same(got_b, want_b))
          << "dot_blocked seed " << seed << " trial " << trial << " got " << std::hexfloat << got_b
          << " want " << want_b;
      for (int j = 0; j < nblocks; ++j)
        ASSERT_TRUE(oracle::same(dmx::dot_block(fa, a.scales[j], &a.codes[j * 32], fb, b.scales[j],
                                                &b.codes[j * 32]),
                                 ref_block(a, b, j)))
            << "dot_block seed " << seed << " trial " << trial << " block " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, DotPairs,
    testing::Combine(testing::ValuesIn(dmx::kAllFormats), testing::ValuesIn(dmx::kAllFormats)),
    [](const auto& info) {
      return std::string(dmx::format_name(std::get<0>(info.param))) + "x" +
             dmx::format_name(std::get<1>(info.param));
    });

Operand filled(MxFormat f, uint8_t scale, uint8_t code, int nblocks = 1) {
  return {f, std::vector<uint8_t>(nblocks, scale), std::vector<uint8_t>(nblocks * 32, code)};
}

TEST(DotEdges, OverflowToInfAndBack) {
  // 32 * 57344^2 * 2^(254+254-254) overflows FP32 in one block.
  const Operand a = filled(MxFormat::E5M2, 254, 0x7b), b = filled(MxFormat::E5M2, 254, 0x7b);
  EXPECT_EQ(dmx::dot_block(MxFormat::E5M2, 254, a.codes.data(), MxFormat::E5M2, 254, b.codes.data()),
            INFINITY);
  EXPECT_EQ(dmx::dot_exact(a.view(), b.view(), 32), INFINITY);
  // 2^127 * 2^-127 * 32 = 32: the scale exponents combine as integers, so no FP32 product of
  // the two scales (which would overflow) ever happens.
  const Operand c = filled(MxFormat::E2M1, 254, 0x2), d = filled(MxFormat::E2M1, 0, 0x2);
  EXPECT_EQ(dmx::dot_block(MxFormat::E2M1, 254, c.codes.data(), MxFormat::E2M1, 0, d.codes.data()),
            32.0f);
  // Blocked chain overflows in the FP32 adds even though each block is finite:
  // r = 448^2 * 32 * 2^(254+104-254) ~ 2^126.6, 3r > FLT_MAX.
  const Operand e = filled(MxFormat::E4M3, 254, 0x7e, 4), g = filled(MxFormat::E4M3, 104, 0x7e, 4);
  const float r = dmx::dot_block(MxFormat::E4M3, 254, e.codes.data(), MxFormat::E4M3, 104, g.codes.data());
  EXPECT_EQ(r, 6422528.0f * 0x1p104f);
  EXPECT_EQ(dmx::dot_blocked(e.view(), g.view(), 128), INFINITY);
  EXPECT_EQ(dmx::dot_blocked(e.view(), g.view(), 64), r + r);
  EXPECT_TRUE(std::isfinite(dmx::dot_exact(e.view(), g.view(), 64)));
  EXPECT_EQ(dmx::dot_exact(e.view(), g.view(), 128), INFINITY);
}

TEST(DotEdges, ScaleSumsAtBothEndsOfE8M0) {
  // sa + sb - 254 = -254: 32 * 2^-9 * 2^-9 * 2^-254 is far below FP32's subnormals -> +0.
  const Operand a = filled(MxFormat::E4M3, 0, 0x01), b = filled(MxFormat::E4M3, 0, 0x01);
  EXPECT_EQ(oracle::bits(dmx::dot_exact(a.view(), b.view(), 32)), 0u);
  const Operand c = filled(MxFormat::E2M1, 0, 0x7), d = filled(MxFormat::E2M1, 100, 0x7);
  // 1152 * 2^(100-254) = 1152 * 2^-154 = 1.125 * 2^-144: FP32 subnormal 9 * 2^-147 -> exactly
  EXPECT_EQ(dmx::dot_block(MxFormat::E2M1, 0, c.codes.data(), MxFormat::E2M1, 100, d.codes.data()),
            std::ldexp(9.0f, -147));
  // A negative tiny result rounds to -0 (the sign of the exact value survives underflow).
  const Operand n = filled(MxFormat::E2M1, 0, 0xf);
  EXPECT_EQ(oracle::bits(dmx::dot_block(MxFormat::E2M1, 0, n.codes.data(), MxFormat::E2M1, 0,
                                        c.codes.data())),
            0x80000000u);
  // Top end: 2^(254+254-254) * 32 * 0.5*0.5 = 2^257 -> Inf.
  const Operand h = filled(MxFormat::E2M1, 254, 0x1);
  EXPECT_EQ(dmx::dot_exact(h.view(), h.view(), 32), INFINITY);
}

TEST(DotEdges, NaNAndInfPropagation) {
  Operand a = filled(MxFormat::E5M2, 127, 0x3c), b = filled(MxFormat::E5M2, 127, 0x3c);  // 1.0
  EXPECT_EQ(dmx::dot_exact(a.view(), b.view(), 32), 32.0f);
  a.scales[0] = 0xff;
  EXPECT_TRUE(std::isnan(dmx::dot_exact(a.view(), b.view(), 32)));
  EXPECT_TRUE(std::isnan(dmx::dot_blocked(a.view(), b.view(), 32)));
  a.scales[0] = 127;
  a.codes[5] = 0x7c;  // +Inf * 1 -> +Inf
  EXPECT_EQ(dmx::dot_blocked(a.view(), b.view(), 32), INFINITY);
  a.codes[6] = 0xfc;  // + -Inf -> NaN
  EXPECT_TRUE(std::isnan(dmx::dot_blocked(a.view(), b.view(), 32)));
  a.codes[6] = 0x3c;
  b.codes[5] = 0x00;  // Inf * 0 -> NaN
  EXPECT_TRUE(std::isnan(dmx::dot_exact(a.view(), b.view(), 32)));
  Operand c = filled(MxFormat::E4M3, 127, 0x38), d = filled(MxFormat::E2M1, 127, 0x2);
  c.codes[31] = 0xff;  // E4M3 NaN element
  EXPECT_TRUE(std::isnan(dmx::dot_blocked(c.view(), d.view(), 32)));
  // A later NaN block poisons the whole blocked chain; Inf then finite stays Inf.
  Operand e = filled(MxFormat::E5M2, 127, 0x3c, 3), g = filled(MxFormat::E5M2, 127, 0x3c, 3);
  e.codes[40] = 0x7c;
  EXPECT_EQ(dmx::dot_blocked(e.view(), g.view(), 96), INFINITY);
  g.scales[2] = 0xff;
  EXPECT_TRUE(std::isnan(dmx::dot_blocked(e.view(), g.view(), 96)));
}

TEST(DotEdges, SignedZeros) {
  const Operand a = filled(MxFormat::E4M3, 127, 0x80), b = filled(MxFormat::E4M3, 127, 0x38);
  EXPECT_EQ(oracle::bits(dmx::dot_block(MxFormat::E4M3, 127, a.codes.data(), MxFormat::E4M3, 127,
                                        b.codes.data())),
            0x80000000u);  // every product -0 -> -0
  EXPECT_EQ(oracle::bits(dmx::dot_blocked(a.view(), b.view(), 32)), 0x80000000u);
  EXPECT_EQ(oracle::bits(dmx::dot_exact(a.view(), b.view(), 32)), 0x80000000u);
  Operand c = a;
  c.codes[3] = 0x00;  // one +0 product -> +0
  EXPECT_EQ(oracle::bits(dmx::dot_exact(c.view(), b.view(), 32)), 0u);
  Operand d = filled(MxFormat::E4M3, 127, 0x38), e = filled(MxFormat::E4M3, 127, 0x38);
  for (int i = 0; i < 16; ++i) d.codes[i] = 0xb8;  // 16 * (+1) + 16 * (-1) = exact +0
  EXPECT_EQ(oracle::bits(dmx::dot_block(MxFormat::E4M3, 127, d.codes.data(), MxFormat::E4M3, 127,
                                        e.codes.data())),
            0u);
  // Accumulator input: -0 + r == r, and the accumulator participates in FP32 RNE.
  EXPECT_EQ(dmx::dot_blocked(d.view(), e.view(), 32, 1.5f), 1.5f);
}

}  // namespace

namespace {

// The MX core's rounding of an integer times a power of two (every block sum and every dequantized
// value goes through it) against GMP: random magnitudes up to 100 bits across the subnormal and
// overflow edges, and exact ties and near-ties at every rounding position.
TEST(RoundToFp32, MatchesGmpOnRandomMagnitudesAndEveryTie) {
  const uint64_t seed = 0x5eed0c0d;
  std::mt19937_64 rng(seed);
  auto check = [&](uint64_t hi, uint64_t lo, int exp, bool neg) {
    const unsigned __int128 m = (static_cast<unsigned __int128>(hi) << 64) | lo;
    mpz_class mz(static_cast<unsigned long>(hi));
    mpz_mul_2exp(mz.get_mpz_t(), mz.get_mpz_t(), 64);
    mz += mpz_class(static_cast<unsigned long>(lo));
    mpq_class q(mz);
    q *= oracle::pow2q(exp);
    const float want = neg && mz == 0 ? -0.0f : oracle::round_rational(neg ? -q : q);
    ASSERT_EQ(oracle::bits(dmx::round_to_fp32(neg, m, exp)), oracle::bits(want))
        << "hi " << hi << " lo " << lo << " exp " << exp << " neg " << neg << " seed " << seed;
  };
  for (int iter = 0; iter < 100000; ++iter) {
    const int bits = 1 + static_cast<int>(rng() % 100);  // magnitude bit length
    uint64_t hi = 0, lo = rng();
    if (bits > 64)
      hi = rng() >> (128 - bits);
    else
      lo >>= (64 - bits);
    if (rng() % 4 == 0) lo &= ~((1ull << (rng() % 64)) - 1);  // many trailing zeros: ties
    const int exp = static_cast<int>(rng() % 520) - 330;      // subnormal range .. overflow
    check(hi, lo, exp, rng() & 1);
  }
  for (int p = 0; p < 100; ++p)
    for (int exp : {-400, -300, -200, -175, -160, -150, -149, -148, -126, -100, 0, 20, 60, 100, 104,
                    105, 127, 128})
      for (int64_t d = -2; d <= 2; ++d) {
        const unsigned __int128 m = (static_cast<unsigned __int128>(3) << p) + d;
        if (m == 0) continue;
        check(static_cast<uint64_t>(m >> 64), static_cast<uint64_t>(m), exp, false);
        check(static_cast<uint64_t>(m >> 64), static_cast<uint64_t>(m), exp, true);
      }
  check(0, 0, 5, true);  // -0
}

}  // namespace
