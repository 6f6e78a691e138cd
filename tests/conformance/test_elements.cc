// Element formats: constants, decode of every code, encode against the grid-search oracle,
// floor_log2, and the canonical packing.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "dmx/golden.h"
#include "oracle.h"

using dmx::MxFormat;

namespace {

int fi(MxFormat f) { return static_cast<int>(f); }

TEST(Formats, ConstantsMatchDesignTable) {
  for (MxFormat f : dmx::kAllFormats) {
    const auto& info = dmx::format_info(f);
    const oracle::Spec s = oracle::spec(fi(f));
    SCOPED_TRACE(info.name);
    EXPECT_EQ(info.max_normal, s.max_normal);
    EXPECT_EQ(info.min_subnormal, s.min_subnormal);
    EXPECT_EQ(std::ldexp(static_cast<double>(info.max_magnitude), info.quantum_exp), s.max_normal);
    EXPECT_EQ(info.bits, s.is_int ? 8 : 1 + s.ebits + s.mbits);
    if (!s.is_int) EXPECT_EQ(info.bias, s.bias);
  }
  // emax column of golden/README.md's format table
  EXPECT_EQ(dmx::format_info(MxFormat::E4M3).emax, 8);
  EXPECT_EQ(dmx::format_info(MxFormat::E5M2).emax, 15);
  EXPECT_EQ(dmx::format_info(MxFormat::E3M2).emax, 4);
  EXPECT_EQ(dmx::format_info(MxFormat::E2M3).emax, 2);
  EXPECT_EQ(dmx::format_info(MxFormat::E2M1).emax, 2);
  EXPECT_EQ(dmx::format_info(MxFormat::INT8).emax, 0);
  // max normal codes of golden/README.md's format table
  EXPECT_EQ(dmx::encode_element(MxFormat::E4M3, 448.0f), 0x7e);
  EXPECT_EQ(dmx::encode_element(MxFormat::E5M2, 57344.0f), 0x7b);
}

TEST(Formats, ParseNames) {
  EXPECT_EQ(dmx::parse_format("MXFP4"), MxFormat::E2M1);
  EXPECT_EQ(dmx::parse_format("fp8_e5m2"), MxFormat::E5M2);
  EXPECT_EQ(dmx::parse_format("e3m2"), MxFormat::E3M2);
  EXPECT_EQ(dmx::parse_format("int8"), MxFormat::INT8);
  EXPECT_FALSE(dmx::parse_format("e4m4").has_value());
  for (MxFormat f : dmx::kAllFormats) EXPECT_EQ(dmx::parse_format(dmx::format_name(f)), f);
}

TEST(Elements, DecodeEveryCode) {
  for (MxFormat f : dmx::kAllFormats) {
    for (int c = 0; c < oracle::code_count(fi(f)); ++c) {
      const double want = oracle::decode(fi(f), c);
      const float got = dmx::decode_element(f, static_cast<uint8_t>(c));
      SCOPED_TRACE(testing::Message() << dmx::format_name(f) << " code 0x" << std::hex << c);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got));
        EXPECT_TRUE(dmx::decode_element_exact(f, c).is_nan);
      } else {
        EXPECT_EQ(static_cast<double>(got), want);
        EXPECT_EQ(std::signbit(got), std::signbit(want));
      }
    }
  }
  // Special encodings of the format table of golden/README.md.
  EXPECT_TRUE(std::isnan(dmx::decode_element(MxFormat::E4M3, 0x7f)));
  EXPECT_TRUE(std::isnan(dmx::decode_element(MxFormat::E4M3, 0xff)));
  EXPECT_EQ(dmx::decode_element(MxFormat::E4M3, 0x78), 256.0f);  // S.1111.000 is finite
  EXPECT_EQ(dmx::decode_element(MxFormat::E5M2, 0x7c), INFINITY);
  EXPECT_EQ(dmx::decode_element(MxFormat::E5M2, 0xfc), -INFINITY);
  for (int c : {0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff})
    EXPECT_TRUE(std::isnan(dmx::decode_element(MxFormat::E5M2, c)));
  EXPECT_EQ(dmx::decode_element(MxFormat::INT8, 0x80), -2.0f);
  EXPECT_EQ(dmx::decode_element(MxFormat::E2M1, 0x1), 0.5f);
}

// Element encode over a strided sample of 2^24 FP32 bit patterns (plus every pattern within
// a few ulps of every grid point and midpoint), against the grid-search oracle, SAT and OVF.
TEST(Elements, EncodeMatchesGridOracle) {
  for (MxFormat f : dmx::kAllFormats) {
    const oracle::Encoder enc(fi(f));
    std::vector<uint32_t> patterns;
    for (uint64_t i = 0; i < (1ull << 24); ++i) patterns.push_back(static_cast<uint32_t>(i * 256 + (i * 37) % 256));
    for (int c = 0; c < oracle::code_count(fi(f)); ++c) {
      const double v = oracle::decode(fi(f), c);
      if (!std::isfinite(v)) continue;
      const double nxt = oracle::decode(fi(f), c + 1);
      for (double p : {v, std::isfinite(nxt) ? (v + nxt) / 2 : v}) {
        const uint32_t b = oracle::bits(static_cast<float>(p));
        for (int d = -3; d <= 3; ++d) patterns.push_back(b + d);
      }
    }
    int failures = 0;
    for (uint32_t b : patterns) {
      const float x = oracle::from_bits(b);
      for (bool ovf : {false, true}) {
        const uint8_t want = enc.encode(x, ovf);
        const uint8_t got =
            dmx::encode_element(f, x, ovf ? dmx::Overflow::OVF : dmx::Overflow::SAT);
        if (got != want && ++failures < 10)
          ADD_FAILURE() << dmx::format_name(f) << " x=" << std::hexfloat << x << " bits=0x"
                        << std::hex << b << (ovf ? " OVF" : " SAT") << " got 0x" << int(got)
                        << " want 0x" << int(want);
      }
    }
    EXPECT_EQ(failures, 0) << dmx::format_name(f);
  }
}

TEST(Elements, Int8MinusOneTwentyEight) {
  EXPECT_EQ(dmx::encode_element(MxFormat::INT8, -2.0f), 0x81);  // clamp to -127 by default
  EXPECT_EQ(dmx::encode_element(MxFormat::INT8, -2.0f, dmx::Overflow::SAT, true), 0x80);
  EXPECT_EQ(dmx::encode_element(MxFormat::INT8, -127.5f / 64, dmx::Overflow::SAT, true), 0x80);
  EXPECT_EQ(dmx::encode_element(MxFormat::INT8, -127.4f / 64, dmx::Overflow::SAT, true), 0x81);
  EXPECT_EQ(dmx::encode_element(MxFormat::INT8, 2.0f, dmx::Overflow::SAT, true), 0x7f);
  const oracle::Encoder enc(fi(MxFormat::INT8));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.5f, 2.5f);
  for (int i = 0; i < 200000; ++i) {
    const float x = u(rng);
    ASSERT_EQ(dmx::encode_element(MxFormat::INT8, x, dmx::Overflow::SAT, true),
              enc.encode(x, false, true))
        << "seed 7 x=" << std::hexfloat << x;
  }
}

TEST(Elements, FloorLog2FromBitsAgreesWithFrexp) {
  // Every FP32 exponent including subnormals, and values just below powers of two where a
  // floating-point log2 rounds up.
  std::mt19937 rng(11);
  for (int e = -149; e <= 127; ++e) {
    const float p = std::ldexp(1.0f, e);
    for (float x : {p, std::nextafter(p, 0.0f), std::nextafter(p, INFINITY)}) {
      if (x == 0 || std::isinf(x)) continue;
      int fe;
      std::frexp(static_cast<double>(x), &fe);
      ASSERT_EQ(dmx::floor_log2(x), fe - 1) << std::hexfloat << x;
      ASSERT_EQ(dmx::floor_log2(-x), fe - 1) << std::hexfloat << x;
    }
  }
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t b = rng() & 0x7fffffffu;
    const float x = oracle::from_bits(b);
    if (x == 0 || !std::isfinite(x)) continue;
    int fe;
    std::frexp(static_cast<double>(x), &fe);
    ASSERT_EQ(dmx::floor_log2(x), fe - 1) << "seed 11 bits 0x" << std::hex << b;
  }
  // The trap golden/README.md warns of: log2f rounds 0x1.fffffep+99 up to exactly 100.
  EXPECT_EQ(dmx::floor_log2(0x1.fffffep+99f), 99);
  EXPECT_EQ(std::floor(std::log2(0x1.fffffep+99f)), 100.0f);
}

TEST(Packing, RoundTripAndLayout) {
  std::mt19937 rng(3);
  for (MxFormat f : dmx::kAllFormats) {
    const int bits = dmx::format_bits(f);
    const size_t n = 96;
    std::vector<uint8_t> codes(n), back(n), packed(dmx::packed_bytes(f, n));
    for (auto& c : codes) c = rng() & ((1u << bits) - 1);
    dmx::pack_codes(f, codes.data(), n, packed.data());
    dmx::unpack_codes(f, packed.data(), n, back.data());
    EXPECT_EQ(codes, back) << dmx::format_name(f);
    EXPECT_EQ(packed.size(), n * bits / 8);
    // Element i sits at bits [bits*i, bits*(i+1)) of the little-endian byte stream.
    for (size_t i = 0; i < n; ++i) {
      uint32_t v = 0;
      for (int k = 0; k < bits; ++k) {
        const size_t bit = i * bits + k;
        v |= ((packed[bit / 8] >> (bit % 8)) & 1u) << k;
      }
      ASSERT_EQ(v, codes[i]) << dmx::format_name(f) << " element " << i;
    }
  }
  // FP4: even element in the low nibble.
  const uint8_t c4[2] = {0x3, 0xa};
  uint8_t p4;
  dmx::pack_codes(MxFormat::E2M1, c4, 2, &p4);
  EXPECT_EQ(p4, 0xa3);
}

}  // namespace
