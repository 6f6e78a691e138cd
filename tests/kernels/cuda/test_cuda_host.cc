// Host-side tests of the CUDA kernels' arithmetic: kernels/cuda/mx_device.h is the code the GPU
// runs (__host__ __device__), compiled here by the host compiler and checked against golden.
// What mx_device.h takes from golden's MX core (decode, encode, shared exponent, rounding) is
// golden's own code, checked by the conformance suite; here: the GPU's own routes (decode tables,
// the fast encoder, packed words, the block quantizer and the accumulator widths).
// Needs no GPU and no CUDA toolkit.
#include <dmx/golden.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "mx_device.h"

namespace dmx::cuda::detail {
namespace {

constexpr uint32_t kSeed = 0x5eed0c0d;

int ncodes(MxFormat f) { return 1 << format_bits(f); }

// Random FP32 bit patterns biased toward the interesting: normal values of varied magnitude,
// subnormals, zeros, Inf and NaN.
uint32_t random_f32_bits(std::mt19937& rng) {
  switch (rng() % 10) {
    case 0:
      return rng() & 0x807fffffu;  // subnormal / zero
    case 1:
      return (rng() & 0x80000000u) | 0x7f800000u;  // +-Inf
    case 2:
      return 0x7f800000u | (rng() & 0x807fffffu) | 1u;  // NaN
    case 3:
      return (rng() & 0x80000000u) | ((rng() % 3) << 22);  // +-0 / tiny subnormals
    default: {
      const uint32_t e = 127 + static_cast<int>(rng() % 61) - 30;  // 2^-30 .. 2^30
      return (rng() & 0x80000000u) | (e << 23) | (rng() & 0x7fffffu);
    }
  }
}

TEST(CudaHostArith, DecodeTableMatchesGoldenForEveryCode) {
  for (MxFormat f : kAllFormats) {
    DecodeTable t;
    fill_decode_table(make_consts(f), t);
    for (int code = 0; code < ncodes(f); ++code) {
      const ElementValue g = decode_element_exact(f, static_cast<uint8_t>(code));
      SCOPED_TRACE(std::string(format_name(f)) + " code " + std::to_string(code));
      EXPECT_EQ(bool(t.flags[code] & kFlagNeg), g.negative);
      EXPECT_EQ(bool(t.flags[code] & kFlagNaN), g.is_nan);
      EXPECT_EQ(bool(t.flags[code] & kFlagInf), g.is_inf);
      const int64_t want =
          (g.is_nan || g.is_inf) ? 0 : (g.negative ? -int64_t(g.magnitude) : int64_t(g.magnitude));
      EXPECT_EQ(t.value[code], want);
      if (f != MxFormat::E5M2) {
        EXPECT_EQ(t.value32[code], want);
      }
      const ElementValue back = element_of(t, static_cast<uint8_t>(code));
      EXPECT_EQ(back.negative, g.negative);
      EXPECT_EQ(back.is_nan, g.is_nan);
      EXPECT_EQ(back.is_inf, g.is_inf);
      if (!g.is_nan && !g.is_inf) {
        EXPECT_EQ(back.magnitude, g.magnitude);
      }
    }
  }
}

// Both dequantize routes the kernels use (integer rounding, and table value x FP32 scale) equal
// golden's dequantize_block for every code and every scale, NaN bits included.
TEST(CudaHostArith, DequantizeElementMatchesGoldenForEveryCodeAndScale) {
  for (MxFormat f : kAllFormats) {
    const FormatConsts c = make_consts(f);
    DecodeTable t;
    fill_decode_table(c, t);
    for (int s = 0; s < 256; ++s) {
      MxBlock b;
      b.scale = static_cast<uint8_t>(s);
      for (int base = 0; base < ncodes(f); base += kBlockSize) {
        for (int i = 0; i < kBlockSize; ++i)
          b.codes[i] = static_cast<uint8_t>((base + i) % ncodes(f));
        float want[kBlockSize];
        dequantize_block(f, b, want);
        for (int i = 0; i < kBlockSize; ++i) {
          const uint8_t code = b.codes[i];
          const float exact = dequantize_element(c, b.scale, code);
          const float fast =
              dequantize_element_fast(decode_element(f, code), t.flags[code], b.scale);
          ASSERT_EQ(fp32_bits(exact), fp32_bits(want[i]))
              << format_name(f) << " scale " << s << " code " << int(code);
          ASSERT_EQ(fp32_bits(fast), fp32_bits(want[i]))
              << format_name(f) << " scale " << s << " code " << int(code);
          ASSERT_EQ(f32_to_bf16_bits(exact), fp32_to_bf16(want[i]));
        }
      }
    }
  }
}

// The quantizer's fast route (default SAT, no -128): FP32 pre-scaling then an RNE conversion.
TEST(CudaHostArith, EncodeFastMatchesGoldenForEveryFeasibleScale) {
  std::mt19937 rng(kSeed);
  for (MxFormat f : kAllFormats) {
    const FormatConsts c = make_consts(f);
    for (int iter = 0; iter < 100000; ++iter) {
      uint32_t b;
      do b = random_f32_bits(rng);
      while ((b & 0x7fffffffu) >= 0x7f800000u);
      // Any scale a block holding x can get: s >= floor(log2 |x|) - emax (amax >= |x|), and the
      // clamps [-127, 127].
      const int lo = (b & 0x7fffffffu) ? dmx::floor_log2(fp32_from_bits(b)) - c.emax : -127;
      int s = std::max(-127, lo) + static_cast<int>(rng() % 12);
      if (iter % 5 == 0) s = std::max(-127, lo) + static_cast<int>(rng() % 200);
      s = std::min(s, 127);
      const float y = fp32_from_bits(b) * decode_scale(static_cast<uint8_t>(127 - s));
      ASSERT_EQ(encode_fast(c, y), encode_element_scaled(f, fp32_from_bits(b), s))
          << format_name(f) << " x bits " << b << " s " << s << " seed " << kSeed;
    }
  }
}

// Every rounding boundary of every format: each midpoint between neighbouring grid values (a
// tie), one FP32 ulp either side, both signs; plus a strided sweep of all FP32 patterns below
// 2^(emax+2).
TEST(CudaHostArith, EncodeFastMatchesGoldenAtEveryTieAndOnASweep) {
  for (MxFormat f : kAllFormats) {
    const FormatConsts c = make_consts(f);
    const FormatInfo& fi = format_info(f);
    std::vector<float> grid;  // every finite non-negative element value
    for (int code = 0; code < ncodes(f); ++code) {
      const ElementValue e = decode_element_exact(f, static_cast<uint8_t>(code));
      if (!e.negative && !e.is_nan && !e.is_inf) grid.push_back(decode_element(f, uint8_t(code)));
    }
    std::sort(grid.begin(), grid.end());
    grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
    std::vector<float> probes;
    for (size_t i = 0; i + 1 < grid.size(); ++i) {
      const float mid = (grid[i] + grid[i + 1]) / 2;  // exact: both on a coarse grid
      probes.insert(probes.end(),
                    {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f), grid[i]});
    }
    const float top = grid.back();
    for (float v : {top, std::nextafter(top, 1e30f), top * 1.0625f, top * 1.9f})
      probes.push_back(v);
    for (float p : probes)
      for (float v : {p, -p}) {
        if (std::fabs(v) >= std::ldexp(1.0f, fi.emax + 2)) continue;
        ASSERT_EQ(encode_fast(c, v), encode_element_scaled(f, v, 0)) << format_name(f) << " " << v;
      }
    const uint32_t limit = fp32_bits(std::ldexp(1.0f, fi.emax + 2));
    for (uint32_t b = 0; b < limit; b += 4099) {
      ASSERT_EQ(encode_fast(c, fp32_from_bits(b)), encode_element_scaled(f, fp32_from_bits(b), 0))
          << format_name(f) << " bits " << b;
      ASSERT_EQ(encode_fast(c, fp32_from_bits(b | 0x80000000u)),
                encode_element_scaled(f, fp32_from_bits(b | 0x80000000u), 0))
          << format_name(f) << " bits " << (b | 0x80000000u);
    }
  }
}

template <int BITS>
void check_quantize_blocks(MxFormat f, std::mt19937& rng) {
  const FormatConsts c = make_consts(f);
  for (ScaleRule rule : {ScaleRule::FLOOR, ScaleRule::CEIL, ScaleRule::EVEN, ScaleRule::RCEIL})
    for (Overflow ov : {Overflow::SAT, Overflow::OVF})
      for (NonFinitePolicy nf : {NonFinitePolicy::NAN_SCALE, NonFinitePolicy::ELEMENT})
        for (bool m128 : {false, true}) {
          QuantizeOptions opt;
          opt.scale_rule = rule;
          opt.overflow = ov;
          opt.non_finite = nf;
          opt.int8_allow_minus128 = m128;
          for (int iter = 0; iter < 400; ++iter) {
            float v[kBlockSize];
            std::normal_distribution<float> nd(0.0f, 1.0f);
            const float mag = std::ldexp(1.0f, static_cast<int>(rng() % 300) - 150);
            for (auto& x : v) x = nd(rng) * mag;
            const int edges = iter % 4 == 0 ? static_cast<int>(rng() % 4) : 0;
            for (int e = 0; e < edges; ++e)
              v[rng() % kBlockSize] = fp32_from_bits(random_f32_bits(rng));
            const MxBlock want = quantize_block(f, v, opt);
            uint8_t want_packed[32] = {};
            pack_codes(f, want.codes.data(), kBlockSize, want_packed);
            uint32_t w[BITS];
            const uint8_t scale = quantize_block<BITS>(
                c, opt, [&](int i) { return fp32_bits(v[i]); }, w);
            ASSERT_EQ(scale, want.scale) << format_name(f) << " iter " << iter << " seed " << kSeed;
            ASSERT_EQ(std::memcmp(w, want_packed, 4 * BITS), 0)
                << format_name(f) << " " << scale_rule_name(rule) << " iter " << iter;
          }
        }
}

TEST(CudaHostArith, QuantizeBlockMatchesGoldenForEveryOption) {
  std::mt19937 rng(kSeed);
  for (MxFormat f : kAllFormats) {
    SCOPED_TRACE(format_name(f));
    switch (format_bits(f)) {
      case 4:
        check_quantize_blocks<4>(f, rng);
        break;
      case 6:
        check_quantize_blocks<6>(f, rng);
        break;
      default:
        check_quantize_blocks<8>(f, rng);
    }
  }
}

// The kernels treat a packed matrix as one little-endian bit stream, a block as 4*bits bytes
// starting on a 4-byte boundary; golden's pack_codes row after row must agree.
TEST(CudaHostArith, PackedLayoutIndexMathMatchesGolden) {
  std::mt19937 rng(kSeed);
  for (MxFormat f : kAllFormats) {
    const int bits = format_bits(f);
    const size_t rows = 3, cols = 96;
    std::vector<uint8_t> codes(rows * cols);
    for (auto& x : codes) x = static_cast<uint8_t>(rng() % ncodes(f));
    const size_t rb = packed_bytes(f, cols);
    ASSERT_EQ(rb, cols / kBlockSize * size_t(block_bytes(bits)));
    std::vector<uint8_t> packed(rows * rb + 8, 0);
    for (size_t r = 0; r < rows; ++r) pack_codes(f, &codes[r * cols], cols, &packed[r * rb]);
    for (size_t i = 0; i < rows * cols; ++i)
      ASSERT_EQ(code_at(bits, packed.data(), i), codes[i]) << format_name(f) << " element " << i;
    for (size_t blk = 0; blk < rows * cols / kBlockSize; ++blk) {
      uint32_t w[8] = {}, rebuilt[8] = {};
      std::memcpy(w, &packed[blk * block_bytes(bits)], block_bytes(bits));
      for (int i = 0; i < kBlockSize; ++i) {
        uint32_t got = 0;
        switch (bits) {
          case 4:
            got = code_from_words<4>(w, i);
            put_code_words<4>(rebuilt, i, got);
            break;
          case 6:
            got = code_from_words<6>(w, i);
            put_code_words<6>(rebuilt, i, got);
            break;
          default:
            got = code_from_words<8>(w, i);
            put_code_words<8>(rebuilt, i, got);
        }
        ASSERT_EQ(got, codes[blk * kBlockSize + i]) << format_name(f) << " block " << blk;
      }
      ASSERT_EQ(std::memcmp(w, rebuilt, block_bytes(bits)), 0);
      // The half-block view of the MMA kernel: element 16h+i of a block is element i of the
      // (bits/2)-word stream starting at word h*bits/2.
      for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 16; ++i) {
          uint32_t got = 0;
          switch (bits) {
            case 4:
              got = code_from_words<4>(w + h * 2, i);
              break;
            case 6:
              got = code_from_words<6>(w + h * 3, i);
              break;
            default:
              got = code_from_words<8>(w + h * 4, i);
          }
          ASSERT_EQ(got, codes[blk * kBlockSize + 16 * h + i]);
        }
    }
  }
}

TEST(CudaHostArith, AccumulatorWidthChosenFromTheExactBound) {
  int count[3] = {};
  for (MxFormat a : kAllFormats)
    for (MxFormat b : kAllFormats) {
      const unsigned __int128 bound = static_cast<unsigned __int128>(32) *
                                      format_info(a).max_magnitude * format_info(b).max_magnitude;
      const int want = bound < (static_cast<unsigned __int128>(1) << 31)   ? 32
                       : bound < (static_cast<unsigned __int128>(1) << 63) ? 64
                                                                           : 128;
      EXPECT_EQ(acc_bits(make_consts(a), make_consts(b)), want)
          << format_name(a) << " x " << format_name(b);
      ++count[want == 32 ? 0 : want == 64 ? 1 : 2];
    }
  EXPECT_EQ(count[2], 1);  // E5M2 x E5M2 only (E5M2 x E4M3 peaks near 2^54.6)
  EXPECT_TRUE(acc_bits(make_consts(MxFormat::E4M3), make_consts(MxFormat::E2M1)) == 32);
}

// Random codes over the whole code space (NaN/Inf included) plus scales from the full range.
struct RandomBlock {
  uint8_t ca[kBlockSize], cb[kBlockSize], sa, sb;
};
RandomBlock random_block(MxFormat fa, MxFormat fb, std::mt19937& rng, int kind) {
  RandomBlock r;
  for (int i = 0; i < kBlockSize; ++i) {
    r.ca[i] = static_cast<uint8_t>(rng() % ncodes(fa));
    r.cb[i] = static_cast<uint8_t>(rng() % ncodes(fb));
  }
  if (kind == 1) {  // zero sums: only +-0 codes (sign decides the zero's sign)
    for (int i = 0; i < kBlockSize; ++i) {
      r.ca[i] = (rng() & 1) ? static_cast<uint8_t>(1u << (format_bits(fa) - 1)) : 0;
      r.cb[i] = static_cast<uint8_t>(rng() % ncodes(fb));
      if (format_info(fa).is_int) r.ca[i] = 0;
    }
  } else if (kind == 2) {  // cancellation: B = -A pattern on a repeated value
    for (int i = 0; i < kBlockSize; i += 2) {
      r.ca[i + 1] = r.ca[i];
      r.cb[i + 1] = format_info(fb).is_int
                        ? static_cast<uint8_t>(-int8_t(r.cb[i]))
                        : static_cast<uint8_t>(r.cb[i] ^ (1u << (format_bits(fb) - 1)));
    }
  } else if (kind == 3) {  // largest magnitudes (E5M2 x E5M2 needs ~69 bits)
    const uint8_t ma = core::code_from_magnitude(make_consts(fa), false, format_info(fa).max_magnitude);
    const uint8_t mb = core::code_from_magnitude(make_consts(fb), false, format_info(fb).max_magnitude);
    for (int i = 0; i < kBlockSize; ++i) r.ca[i] = ma, r.cb[i] = mb;
  }
  const int pick = static_cast<int>(rng() % 16);
  r.sa = pick == 0 ? 0 : pick == 1 ? 254 : pick == 2 ? 0xFF : static_cast<uint8_t>(rng() % 255);
  r.sb = static_cast<uint8_t>(rng() % 40 == 0 ? 0xFF : rng() % 255);
  return r;
}

template <int AccBits>
float device_block(const DecodeTable& ta, const DecodeTable& tb, bool sp_a, bool sp_b, int qsum,
                   const RandomBlock& r) {
  return dot_block<AccBits>(
      ta, tb, sp_a, sp_b, qsum, r.sa, r.sb, [&](int i) { return r.ca[i]; },
      [&](int i) { return r.cb[i]; });
}

float device_block_auto(int bits, const DecodeTable& ta, const DecodeTable& tb, bool sp_a,
                        bool sp_b, int qsum, const RandomBlock& r) {
  return bits == 32   ? device_block<32>(ta, tb, sp_a, sp_b, qsum, r)
         : bits == 64 ? device_block<64>(ta, tb, sp_a, sp_b, qsum, r)
                      : device_block<128>(ta, tb, sp_a, sp_b, qsum, r);
}

TEST(CudaHostArith, BlockDotMatchesGoldenForEveryFormatPair) {
  std::mt19937 rng(kSeed);
  for (MxFormat fa : kAllFormats)
    for (MxFormat fb : kAllFormats) {
      const FormatConsts ca = make_consts(fa), cb = make_consts(fb);
      DecodeTable ta, tb;
      fill_decode_table(ca, ta);
      fill_decode_table(cb, tb);
      const int bits = acc_bits(ca, cb);
      const bool sp_a = ca.has_nan || ca.has_inf, sp_b = cb.has_nan || cb.has_inf;
      const int qsum = ca.quantum_exp + cb.quantum_exp;
      for (int iter = 0; iter < 3000; ++iter) {
        const RandomBlock r = random_block(fa, fb, rng, iter % 4);
        const float want = dot_block(fa, r.sa, r.ca, fb, r.sb, r.cb);
        const float got = device_block_auto(bits, ta, tb, sp_a, sp_b, qsum, r);
        ASSERT_EQ(fp32_bits(got), fp32_bits(want))
            << format_name(fa) << " x " << format_name(fb) << " (" << bits << "-bit sums) iter "
            << iter << " seed " << kSeed;
        // The wider loops and the slow (IEEE) loop agree with it too.
        if (bits <= 64) {
          ASSERT_EQ(fp32_bits(device_block<64>(ta, tb, sp_a, sp_b, qsum, r)), fp32_bits(want));
        }
        ASSERT_EQ(fp32_bits(device_block<128>(ta, tb, sp_a, sp_b, qsum, r)), fp32_bits(want));
        const float slow = dot_block_slow(
            ta, tb, qsum, r.sa, r.sb, [&](int i) { return r.ca[i]; },
            [&](int i) { return r.cb[i]; });
        ASSERT_EQ(fp32_bits(slow), fp32_bits(want));
      }
    }
}

// dot_blocked as the exact kernels run it: block results added in block order from -0.
TEST(CudaHostArith, BlockedAccumulationMatchesDotBlocked) {
  std::mt19937 rng(kSeed);
  const size_t n = 32 * 24;
  for (MxFormat fa : kAllFormats)
    for (MxFormat fb : kAllFormats) {
      const FormatConsts ca = make_consts(fa), cb = make_consts(fb);
      DecodeTable ta, tb;
      fill_decode_table(ca, ta);
      fill_decode_table(cb, tb);
      const bool sp_a = ca.has_nan || ca.has_inf, sp_b = cb.has_nan || cb.has_inf;
      const int bits = acc_bits(ca, cb);
      for (int iter = 0; iter < 20; ++iter) {
        std::vector<uint8_t> a(n), b(n), sa(n / 32), sb(n / 32);
        for (size_t i = 0; i < n; ++i) {
          // finite codes mostly, so that sums are not all NaN
          do a[i] = static_cast<uint8_t>(rng() % ncodes(fa));
          while ((ta.flags[a[i]] & (kFlagNaN | kFlagInf)) && rng() % 64);
          do b[i] = static_cast<uint8_t>(rng() % ncodes(fb));
          while ((tb.flags[b[i]] & (kFlagNaN | kFlagInf)) && rng() % 64);
        }
        for (size_t j = 0; j < n / 32; ++j) {
          sa[j] = static_cast<uint8_t>(110 + rng() % 30);
          sb[j] = static_cast<uint8_t>(110 + rng() % 30);
        }
        const float want = dot_blocked({fa, sa.data(), a.data()}, {fb, sb.data(), b.data()}, n);
        float acc = -0.0f;
        for (size_t j = 0; j < n / 32; ++j) {
          RandomBlock blk;
          std::copy(&a[j * 32], &a[j * 32] + 32, blk.ca);
          std::copy(&b[j * 32], &b[j * 32] + 32, blk.cb);
          blk.sa = sa[j];
          blk.sb = sb[j];
          acc = acc +
                device_block_auto(bits, ta, tb, sp_a, sp_b, ca.quantum_exp + cb.quantum_exp, blk);
        }
        ASSERT_EQ(fp32_bits(acc), fp32_bits(want))
            << format_name(fa) << " x " << format_name(fb) << " iter " << iter;
      }
    }
}

TEST(CudaHostArith, Bf16RoundingMatchesGolden) {
  std::mt19937 rng(kSeed);
  for (int iter = 0; iter < 200000; ++iter) {
    const uint32_t b = iter < 65536 ? (uint32_t(iter) << 16) | (rng() & 0xffff) : rng();
    ASSERT_EQ(f32_to_bf16_bits(fp32_from_bits(b)), fp32_to_bf16(fp32_from_bits(b))) << b;
  }
}

}  // namespace
}  // namespace dmx::cuda::detail
