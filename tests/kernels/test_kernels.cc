// dmx::kernels against golden, on every kernel path this CPU has (the others are skipped, named).
#include <dmx/golden.h>
#include <dmx/kernels.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace dmx::kernels {
namespace {

constexpr uint32_t kSeed = 20240605;

bool same_float(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return fp32_bits(a) == fp32_bits(b);
}

// An MX matrix owning its packed codes and scales.
struct MxMat {
  MxFormat f;
  size_t rows, cols;
  std::vector<uint8_t> codes, scales;
  std::vector<uint8_t> unpacked;  // rows x cols codes, one per byte
  MxMatrixView view() const { return {f, rows, cols, codes.data(), scales.data()}; }
  MxVector vec(size_t r) const {
    return {f, scales.data() + r * cols / kBlockSize, unpacked.data() + r * cols};
  }
};

// Random element codes (every code of the format, NaN/Inf/-0 included) and scales around 127;
// nan_scale_every > 0 puts a NaN scale on every such block.
MxMat random_mx(MxFormat f, size_t rows, size_t cols, std::mt19937& rng, int scale_lo = 112,
                int scale_hi = 142, int nan_scale_every = 0, bool finite_only = false) {
  MxMat m{f, rows, cols, {}, {}, {}};
  const int ncodes = 1 << format_bits(f);
  m.unpacked.resize(rows * cols);
  for (auto& c : m.unpacked) {
    do {
      c = uint8_t(rng() % ncodes);
    } while (finite_only &&
             (decode_element_exact(f, c).is_nan || decode_element_exact(f, c).is_inf));
  }
  m.scales.resize(rows * cols / kBlockSize);
  std::uniform_int_distribution<int> sd(scale_lo, scale_hi);
  for (size_t i = 0; i < m.scales.size(); ++i)
    m.scales[i] = (nan_scale_every && i % nan_scale_every == size_t(nan_scale_every - 1))
                      ? kScaleNaN
                      : uint8_t(sd(rng));
  const size_t rb = packed_bytes(f, cols);
  m.codes.resize(rows * rb);
  for (size_t r = 0; r < rows; ++r) pack_codes(f, &m.unpacked[r * cols], cols, &m.codes[r * rb]);
  return m;
}

// Random FP32 values with a different magnitude per block, plus the edge values of FP32.
std::vector<float> random_values(size_t n, std::mt19937& rng, bool edges) {
  std::vector<float> v(n);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ed(-30, 30);
  for (size_t b = 0; b < n / kBlockSize; ++b) {
    const float mag = std::ldexp(1.0f, ed(rng));
    for (int i = 0; i < kBlockSize; ++i) v[b * kBlockSize + i] = nd(rng) * mag;
  }
  if (edges) {
    const float specials[] = {0.0f,
                              -0.0f,
                              std::numeric_limits<float>::denorm_min(),
                              -1e-40f,
                              std::numeric_limits<float>::min(),
                              std::numeric_limits<float>::max(),
                              -std::numeric_limits<float>::max(),
                              std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(),
                              1.0f,
                              0.99999994f,
                              6.0f,
                              5.0f,
                              0.25f,
                              448.0f,
                              464.0f,
                              57344.0f,
                              61440.0f};
    std::uniform_int_distribution<size_t> pos(0, n - 1);
    for (float s : specials) v[pos(rng)] = s;
    // Whole blocks of edge content: all zeros, all -0, one FP32 subnormal block, a binade edge.
    if (n >= 4 * kBlockSize) {
      for (int i = 0; i < kBlockSize; ++i) {
        v[i] = 0.0f;
        v[kBlockSize + i] = -0.0f;
        v[2 * kBlockSize + i] = std::ldexp(float(i), -140);
        v[3 * kBlockSize + i] = (i % 2 ? 1.0f : -1.0f) * (0.5f + i / 64.0f) * 8.0f;
      }
    }
  }
  return v;
}

class KernelPathTest : public ::testing::TestWithParam<KernelPath> {
 protected:
  void SetUp() override {
    if (!path_available(GetParam()))
      GTEST_SKIP() << "path " << path_name(GetParam()) << " not available on this CPU";
    std::printf("[ path     ] running on %s (default path here: %s)\n", path_name(GetParam()),
                path_name(default_path()));
  }
  KernelConfig cfg(int threads = 2) const { return {GetParam(), threads}; }
};

TEST_P(KernelPathTest, QuantizeFp32AndBf16MatchGolden) {
  std::mt19937 rng(kSeed);
  for (MxFormat f : kAllFormats) {
    for (int trial = 0; trial < 8; ++trial) {
      const size_t rows = 3, cols = 256;
      std::vector<float> x = random_values(rows * cols, rng, trial % 2 == 0);
      std::vector<uint16_t> xb(x.size());
      for (size_t i = 0; i < x.size(); ++i) xb[i] = fp32_to_bf16(x[i]);
      std::vector<float> xbf(x.size());
      for (size_t i = 0; i < x.size(); ++i) xbf[i] = bf16_to_fp32(xb[i]);
      const size_t rb = packed_bytes(f, cols), nb = cols / kBlockSize;
      for (int bf = 0; bf < 2; ++bf) {
        std::vector<uint8_t> codes(rows * rb), scales(rows * nb);
        if (bf)
          quantize_bf16(f, xb.data(), rows, cols, codes.data(), scales.data(), {}, cfg());
        else
          quantize(f, x.data(), rows, cols, codes.data(), scales.data(), {}, cfg());
        const std::vector<float>& src = bf ? xbf : x;
        for (size_t r = 0; r < rows; ++r) {
          std::vector<uint8_t> gs(nb), gc(cols), gp(rb);
          quantize_row(f, &src[r * cols], cols, gs.data(), gc.data());
          pack_codes(f, gc.data(), cols, gp.data());
          for (size_t j = 0; j < nb; ++j)
            ASSERT_EQ(scales[r * nb + j], gs[j]) << format_name(f) << " bf16=" << bf << " row " << r
                                                 << " block " << j << " seed " << kSeed;
          for (size_t i = 0; i < rb; ++i)
            ASSERT_EQ(codes[r * rb + i], gp[i]) << format_name(f) << " bf16=" << bf << " row " << r
                                                << " byte " << i << " seed " << kSeed;
        }
      }
    }
  }
}

// Every grid value, every midpoint between neighbours (the RNE ties), their FP32 neighbours and
// values past the largest magnitude, both signs, at scales from FP32 subnormals to the top of
// the range: the vector encoders' tie directions and saturation against golden.
TEST_P(KernelPathTest, QuantizeGridTiesAndNeighboursMatchGolden) {
  for (MxFormat f : kAllFormats) {
    const FormatInfo& fi = format_info(f);
    std::vector<float> grid;
    if (fi.is_int) {
      for (int k = 0; k <= 127; ++k) grid.push_back(float(k) / 64.0f);
    } else {
      for (int c = 0; c < (1 << (fi.bits - 1)); ++c) {
        const float g = decode_element(f, uint8_t(c));
        if (std::isfinite(g)) grid.push_back(g);
      }
    }
    std::vector<float> cand;
    for (size_t i = 0; i < grid.size(); ++i) {
      cand.push_back(grid[i]);
      if (i + 1 < grid.size()) {
        const float mid = (grid[i] + grid[i + 1]) * 0.5f;
        cand.push_back(mid);
        cand.push_back(std::nextafter(mid, 0.0f));
        cand.push_back(std::nextafter(mid, 1e30f));
      }
    }
    cand.push_back(fi.max_normal * 1.0625f);
    cand.push_back(
        std::nextafter(2.0f * std::ldexp(1.0f, fi.emax), 0.0f));  // just below 2^(emax+1)
    for (int t : {-149, -140, -127, -126, -60, 0, 3, 60, 120}) {
      std::vector<float> x;
      for (size_t i = 0; i < cand.size(); i += 31) {
        // Element 0 pins the scale: max_normal * 2^t (or the largest finite below).
        const float anchor = std::ldexp(fi.max_normal, t);
        x.push_back(std::isfinite(anchor) ? anchor : std::numeric_limits<float>::max());
        for (size_t k = i; k < i + 31; ++k) {
          const float c = k < cand.size() ? cand[k] : 0.0f;
          const float v = std::ldexp(c, t);
          x.push_back((k % 2 ? -1.0f : 1.0f) * (std::isfinite(v) ? v : 0.0f));
        }
      }
      const size_t cols = x.size(), nb = cols / kBlockSize, rb = packed_bytes(f, cols);
      std::vector<uint8_t> codes(rb), scales(nb), gs(nb), gc(cols), gp(rb);
      quantize(f, x.data(), 1, cols, codes.data(), scales.data(), {}, cfg(1));
      quantize_row(f, x.data(), cols, gs.data(), gc.data());
      pack_codes(f, gc.data(), cols, gp.data());
      for (size_t j = 0; j < nb; ++j)
        ASSERT_EQ(scales[j], gs[j]) << format_name(f) << " t=" << t << " block " << j;
      for (size_t i = 0; i < rb; ++i)
        ASSERT_EQ(codes[i], gp[i]) << format_name(f) << " t=" << t << " byte " << i;
    }
  }
}

TEST_P(KernelPathTest, QuantizeNonDefaultOptionsMatchGolden) {
  std::mt19937 rng(kSeed + 1);
  const size_t rows = 2, cols = 128;
  for (MxFormat f : kAllFormats) {
    for (ScaleRule rule : {ScaleRule::CEIL, ScaleRule::EVEN, ScaleRule::RCEIL}) {
      QuantizeOptions opt;
      opt.scale_rule = rule;
      opt.overflow = Overflow::OVF;
      opt.int8_allow_minus128 = true;
      std::vector<float> x = random_values(rows * cols, rng, true);
      const size_t rb = packed_bytes(f, cols), nb = cols / kBlockSize;
      std::vector<uint8_t> codes(rows * rb), scales(rows * nb);
      quantize(f, x.data(), rows, cols, codes.data(), scales.data(), opt, cfg());
      for (size_t r = 0; r < rows; ++r) {
        std::vector<uint8_t> gs(nb), gc(cols), gp(rb);
        quantize_row(f, &x[r * cols], cols, gs.data(), gc.data(), opt);
        pack_codes(f, gc.data(), cols, gp.data());
        EXPECT_EQ(0, std::memcmp(gs.data(), &scales[r * nb], nb)) << format_name(f);
        EXPECT_EQ(0, std::memcmp(gp.data(), &codes[r * rb], rb)) << format_name(f);
      }
    }
  }
}

TEST_P(KernelPathTest, DequantizeMatchesGolden) {
  std::mt19937 rng(kSeed + 2);
  for (MxFormat f : kAllFormats) {
    // Scales over the whole E8M0 range (0 = 2^-127 and 254 included) and NaN scales.
    const MxMat m = random_mx(f, 5, 320, rng, 0, 254, 7);
    std::vector<float> out(m.rows * m.cols), ref(m.cols);
    std::vector<uint16_t> outb(m.rows * m.cols);
    dequantize(m.view(), out.data(), cfg());
    dequantize_bf16(m.view(), outb.data(), cfg());
    for (size_t r = 0; r < m.rows; ++r) {
      dequantize_row(f, &m.scales[r * m.cols / kBlockSize], &m.unpacked[r * m.cols], m.cols,
                     ref.data());
      for (size_t k = 0; k < m.cols; ++k) {
        ASSERT_TRUE(same_float(out[r * m.cols + k], ref[k]))
            << format_name(f) << " row " << r << " k " << k << ": " << out[r * m.cols + k]
            << " vs golden " << ref[k] << " seed " << kSeed + 2;
        ASSERT_EQ(outb[r * m.cols + k], fp32_to_bf16(ref[k])) << format_name(f) << " k " << k;
      }
    }
  }
}

// Row r of m as a 1-row matrix.
MxMat row_of(const MxMat& m, size_t r) {
  const size_t rb = packed_bytes(m.f, m.cols), nb = m.cols / kBlockSize;
  MxMat o{m.f, 1, m.cols, {}, {}, {}};
  o.codes.assign(m.codes.begin() + r * rb, m.codes.begin() + (r + 1) * rb);
  o.scales.assign(m.scales.begin() + r * nb, m.scales.begin() + (r + 1) * nb);
  o.unpacked.assign(m.unpacked.begin() + r * m.cols, m.unpacked.begin() + (r + 1) * m.cols);
  return o;
}

// C = A * W^T vs golden dot_blocked, every format pair, bit for bit.
void check_gemm(const MxMat& A, const MxMat& W, const KernelConfig& cfg, const std::string& what,
                const PackedWeights* packed = nullptr) {
  std::vector<float> C(A.rows * W.rows, 12345.0f);
  if (packed)
    gemm(A.view(), *packed, C.data(), W.rows, cfg);
  else
    gemm(A.view(), W.view(), C.data(), W.rows, cfg);
  for (size_t m = 0; m < A.rows; ++m)
    for (size_t n = 0; n < W.rows; ++n) {
      const float ref = dot_blocked(A.vec(m), W.vec(n), A.cols);
      ASSERT_TRUE(same_float(C[m * W.rows + n], ref))
          << what << " A=" << format_name(A.f) << " W=" << format_name(W.f) << " M=" << A.rows
          << " N=" << W.rows << " K=" << A.cols << " at (" << m << "," << n
          << "): " << C[m * W.rows + n] << " vs golden " << ref << " ("
          << block_sum_kind_name(block_sum_kind(A.f, W.f)) << " block sums)";
    }
}

TEST_P(KernelPathTest, GemmEveryFormatPairBitExact) {
  std::mt19937 rng(kSeed + 3);
  struct Shape {
    size_t M, N, K;
  };
  const Shape shapes[] = {{1, 13, 96}, {3, 8, 32}, {17, 11, 64}};
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats)
      for (const Shape& s : shapes) {
        const MxMat A = random_mx(fa, s.M, s.K, rng, 112, 142, 11);
        const MxMat W = random_mx(fw, s.N, s.K, rng, 112, 142, 13);
        check_gemm(A, W, cfg(), "random codes seed " + std::to_string(kSeed + 3));
      }
}

TEST_P(KernelPathTest, GemmExtremeScalesZeroRowsAndNaN) {
  std::mt19937 rng(kSeed + 4);
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats) {
      // Scales across the full range: products underflow to FP32 subnormals / zero, overflow to
      // Inf.
      MxMat A = random_mx(fa, 3, 128, rng, 0, 254);
      MxMat W = random_mx(fw, 9, 128, rng, 0, 254);
      check_gemm(A, W, cfg(), "extreme scales");
      // All-zero rows: +0 and -0 codes only, so block sums are zeros of either sign.
      const uint8_t neg_zero = uint8_t(1u << (format_bits(fa) - 1));
      const uint8_t w_neg_zero = uint8_t(1u << (format_bits(fw) - 1));
      const bool a_int = format_info(fa).is_int, w_int = format_info(fw).is_int;
      for (size_t k = 0; k < A.cols; ++k) {
        A.unpacked[k] = (!a_int && rng() % 2) ? neg_zero : 0;  // row 0: zeros
        A.unpacked[A.cols + k] = a_int ? 0 : neg_zero;         // row 1: all -0
      }
      for (size_t k = 0; k < W.cols; ++k) W.unpacked[k] = w_int ? 0 : (k % 3 ? 0 : w_neg_zero);
      const size_t arb = packed_bytes(fa, A.cols), wrb = packed_bytes(fw, W.cols);
      for (size_t r = 0; r < A.rows; ++r)
        pack_codes(fa, &A.unpacked[r * A.cols], A.cols, &A.codes[r * arb]);
      for (size_t r = 0; r < W.rows; ++r)
        pack_codes(fw, &W.unpacked[r * W.cols], W.cols, &W.codes[r * wrb]);
      A.scales[2 * 4 + 1] = kScaleNaN;  // row 2, block 1: NaN scale
      check_gemm(A, W, cfg(), "zero rows / NaN scale");
      // The same rows one at a time: M = 1 takes the GEMV kernels.
      for (size_t r = 0; r < A.rows; ++r) check_gemm(row_of(A, r), W, cfg(), "GEMV row");
    }
}

// Blocks whose exact sum needs more than FP64's 53 bits: big*big + tiny*tiny - big*big in k
// order (E5M2: 2^31.6 and 2^-32), so an FP64 accumulation in k order loses tiny*tiny; mixed with
// ordinary blocks, at several shapes (the wide pairs' per-block exactness check).
TEST_P(KernelPathTest, GemmWideBlocksBeyondFp64) {
  std::mt19937 rng(kSeed + 9);
  const std::pair<MxFormat, MxFormat> pairs[] = {{MxFormat::E5M2, MxFormat::E5M2},
                                                 {MxFormat::E5M2, MxFormat::E4M3},
                                                 {MxFormat::E4M3, MxFormat::E5M2}};
  for (const auto& [fa, fw] : pairs)
    for (size_t M : {size_t(2), size_t(5)}) {
      const size_t N = 13, K = 320;
      MxMat A = random_mx(fa, M, K, rng, 120, 134, 0, true);
      MxMat W = random_mx(fw, N, K, rng, 120, 134, 0, true);
      for (MxMat* x : {&A, &W}) {
        const bool e5 = x->f == MxFormat::E5M2;
        const uint8_t big = e5 ? 0x7B : 0x7E, tiny = 0x01, sign = 0x80;
        for (size_t r = 0; r < x->rows; ++r)
          for (size_t j = 0; j < K / kBlockSize; ++j) {
            if (r > 0 && (r + j) % 3 == 2) continue;  // ordinary blocks, except in row 0
            uint8_t* b = &x->unpacked[r * K + j * kBlockSize];
            std::fill(b, b + kBlockSize, uint8_t(0));
            b[0] = big;
            b[1] = uint8_t(tiny | ((r + j) % 2 ? sign : 0));
            b[2] = uint8_t(big | (x == &A ? sign : 0));  // A: -big, W: big
            if (j % 4 == 3) b[5] = tiny;
          }
        const size_t rb = packed_bytes(x->f, K);
        for (size_t r = 0; r < x->rows; ++r)
          pack_codes(x->f, &x->unpacked[r * K], K, &x->codes[r * rb]);
      }
      check_gemm(A, W, cfg(), "blocks beyond FP64");
      for (size_t r = 0; r < A.rows; ++r) check_gemm(row_of(A, r), W, cfg(), "GEMV beyond FP64");
    }
}

// The interleaved GEMM kernels (M >= 2) across their tiling: several K chunks (the last one
// partial), column panels with a partial tile, row groups with a partial group; realistic data
// with NaN scales, blocks at extreme scales (the exact fallback next to the fast block step),
// an all-zero row, and a row whose dot products cancel to exactly zero (zero results that must be
// checked, not recomputed blindly).
TEST_P(KernelPathTest, GemmInterleavedTilingAndCornerBlocks) {
  std::mt19937 rng(kSeed + 10);
  const size_t M = 17, N = 45, K = 66 * kBlockSize, nb = K / kBlockSize;
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats) {
      MxMat A{fa, M, K, {}, {}, {}}, W{fw, N, K, {}, {}, {}};
      for (MxMat* x : {&A, &W}) {
        std::vector<float> v = random_values(x->rows * K, rng, false);
        if (x == &A) {
          for (size_t k = 0; k < K; ++k) {
            v[2 * K + k] = 0.0f;  // row 2: all zero
            v[3 * K + k] = (k / kBlockSize) % 2 ? -v[3 * K + k - kBlockSize] : v[3 * K + k];
            v[4 * K + k] = -0.0f;  // row 4: all -0 (INT8: 0)
          }
        }
        x->unpacked.resize(v.size());
        x->scales.resize(v.size() / kBlockSize);
        x->codes.resize(x->rows * packed_bytes(x->f, K));
        quantize_row(x->f, v.data(), v.size(), x->scales.data(), x->unpacked.data());
        if (x == &A) {  // row 3: odd blocks are the negated even blocks with the same scale
          for (size_t j = 1; j < nb; j += 2) A.scales[3 * nb + j] = A.scales[3 * nb + j - 1];
          for (size_t j = 0; j < nb; ++j) A.scales[4 * nb + j] = 127;  // row 4: -0 at scale 1
        }
        // NaN and extreme scales past A's row 4 and W's row 15 (rows 0-4 of A against tiles 0-1
        // of W keep ordinary scales: the GEMV's fast block step).
        const size_t first = (x == &A ? 5 : 16) * nb;
        for (size_t i = first; i < x->scales.size(); i += 97) x->scales[i] = kScaleNaN;
        for (size_t i = first + 5; i < x->scales.size(); i += 89)
          x->scales[i] = uint8_t(i % 2 ? 3 : 251);
        for (size_t r = 0; r < x->rows; ++r)
          pack_codes(x->f, &x->unpacked[r * K], K, &x->codes[r * packed_bytes(x->f, K)]);
      }
      // Columns whose weights repeat in block pairs, so row 3's dots cancel exactly.
      for (size_t n = 0; n < N; n += 7) {
        for (size_t j = 1; j < nb; j += 2) {
          std::copy(&W.unpacked[n * K + (j - 1) * kBlockSize], &W.unpacked[n * K + j * kBlockSize],
                    &W.unpacked[n * K + j * kBlockSize]);
          W.scales[n * nb + j] = W.scales[n * nb + j - 1];
        }
        pack_codes(fw, &W.unpacked[n * K], K, &W.codes[n * packed_bytes(fw, K)]);
      }
      // Column 3: no negative weights, so row 4's (all -0) products are all -0: r_j = -0.
      const FormatInfo& fiw = format_info(fw);
      for (size_t k = 0; k < K; ++k) {
        uint8_t& c = W.unpacked[3 * K + k];
        if (fiw.is_int)
          c = c >= 0x80 ? uint8_t(uint8_t(-int8_t(c)) & 0x7F) : c;
        else
          c &= uint8_t((1u << (fiw.bits - 1)) - 1);
      }
      pack_codes(fw, &W.unpacked[3 * K], K, &W.codes[3 * packed_bytes(fw, K)]);
      check_gemm(A, W, cfg(), "interleaved tiling");
      for (size_t r : {size_t(0), size_t(2), size_t(3), size_t(4)})
        check_gemm(row_of(A, r), W, cfg(), "GEMV row " + std::to_string(r));
    }
}

// Prepacked weights (pack_weights + gemm(A, PackedWeights)) against golden for every format pair:
// M = 1 (GEMV fallback), 3, 17 and 70 (partial row groups), N = 45 (a partial panel and tile), K
// over three chunks (the last partial); random codes, NaN scales, blocks at extreme scales, an
// all-zero A row. A packed object called with another A format computes from its view.
TEST_P(KernelPathTest, GemmPrepackedWeightsBitExact) {
  std::mt19937 rng(kSeed + 11);
  const size_t N = 45, K = 66 * kBlockSize;
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats) {
      const bool int_pair = block_sum_kind(fa, fw) == BlockSumKind::Int16;
      // NaN and extreme scales in a few rows only (a NaN scale makes the whole dot NaN).
      const size_t nb = K / kBlockSize;
      MxMat W = random_mx(fw, N, K, rng, 100, 150);
      W.scales[5 * nb + 40] = kScaleNaN;
      W.scales[9 * nb + 3] = 2;
      W.scales[9 * nb + 50] = 252;
      W.scales[44 * nb + 65] = 251;
      const PackedWeights pw = pack_weights(W.view(), fa, cfg());
      EXPECT_EQ(pw.prepacked(), int_pair && GetParam() != KernelPath::Scalar);
      for (size_t M : {size_t(1), size_t(3), size_t(17), size_t(70)}) {
        if (!int_pair && M != 3) continue;
        MxMat A = random_mx(fa, M, K, rng, 100, 150);
        A.scales[(M - 1) * nb + 33] = uint8_t(M % 2 ? 1 : 253);
        if (M > 2) A.scales[2 * nb + 64] = kScaleNaN;
        if (M > 40) {  // inside the second batch of row groups (the exact step's row index)
          A.scales[37 * nb + 20] = 1;
          A.scales[38 * nb + 21] = 254;
        }
        if (M > 1) {  // row 1: all zero codes
          std::fill(&A.unpacked[K], &A.unpacked[2 * K], uint8_t(0));
          pack_codes(fa, &A.unpacked[K], K, &A.codes[packed_bytes(fa, K)]);
        }
        check_gemm(A, W, cfg(), "prepacked", &pw);
      }
      const MxFormat other = fa == MxFormat::INT8 ? MxFormat::E2M1 : MxFormat::INT8;
      check_gemm(random_mx(other, 5, K, rng), W, cfg(), "prepacked, other A format", &pw);
    }
}

TEST_P(KernelPathTest, GemmQuantizedDataAndThreads) {
  // Realistic data (golden-quantized normal values), a shape over several chunks and tiles, and
  // 1 vs 2 threads giving identical bits.
  std::mt19937 rng(kSeed + 5);
  const size_t M = 5, N = 37, K = 1088;
  for (MxFormat fa : {MxFormat::E4M3, MxFormat::E2M1, MxFormat::INT8})
    for (MxFormat fw : kAllFormats) {
      MxMat A{fa, M, K, {}, {}, {}}, W{fw, N, K, {}, {}, {}};
      for (MxMat* x : {&A, &W}) {
        std::vector<float> v = random_values(x->rows * x->cols, rng, false);
        x->unpacked.resize(v.size());
        x->scales.resize(v.size() / kBlockSize);
        x->codes.resize(x->rows * packed_bytes(x->f, K));
        quantize_row(x->f, v.data(), v.size(), x->scales.data(), x->unpacked.data());
        for (size_t r = 0; r < x->rows; ++r)
          pack_codes(x->f, &x->unpacked[r * K], K, &x->codes[r * packed_bytes(x->f, K)]);
      }
      check_gemm(A, W, cfg(2), "quantized data");
      std::vector<float> c1(M * N), c2(M * N);
      gemm(A.view(), W.view(), c1.data(), N, cfg(1));
      gemm(A.view(), W.view(), c2.data(), N, cfg(2));
      ASSERT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * 4));
    }
}

// The FP4 MX GEMV over long rows: an odd block count above 128 (its runs of transposed scale
// words and the last, single block), ordinary and extreme scales, 8-row tiles and a partial one.
TEST_P(KernelPathTest, GemvFp4LongRows) {
  std::mt19937 rng(kSeed + 13);
  const size_t N = 21, K = 131 * kBlockSize, nb = K / kBlockSize;
  for (MxFormat fa : {MxFormat::E2M1, MxFormat::E2M3, MxFormat::INT8}) {
    MxMat W = random_mx(MxFormat::E2M1, N, K, rng, 110, 140);
    const MxMat A = random_mx(fa, 1, K, rng, 110, 140);
    check_gemm(A, W, cfg(), "long GEMV rows");
    W.scales[3 * nb + 129] = 1;  // extreme scales in tiles 0 and 2 (the exact block step)
    W.scales[17 * nb + 130] = 253;
    W.scales[18 * nb + 2] = kScaleNaN;
    check_gemm(A, W, cfg(), "long GEMV rows, extreme scales");
  }
}

// An MX matrix of golden-quantized normal values (per-block magnitudes 2^-30..2^30).
MxMat quantized_mx(MxFormat f, size_t rows, size_t cols, std::mt19937& rng) {
  MxMat x{f, rows, cols, {}, {}, {}};
  std::vector<float> v = random_values(rows * cols, rng, false);
  x.unpacked.resize(v.size());
  x.scales.resize(v.size() / kBlockSize);
  x.codes.resize(rows * packed_bytes(f, cols));
  quantize_row(f, v.data(), v.size(), x.scales.data(), x.unpacked.data());
  for (size_t r = 0; r < rows; ++r)
    pack_codes(f, &x.unpacked[r * cols], cols, &x.codes[r * packed_bytes(f, cols)]);
  return x;
}

// The M = 1 GEMV kernels (gemm / gemv with one A row) on every diagonal pair and the mixed
// pairs of each route: a ragged tile (N = 21), an odd block count above 64 (vector and tail
// scale transposes, the last single block of a block pair), realistic data and random codes
// (NaN / Inf elements), NaN scales in A and W, scales at both ends of the range (the FP64 block
// step next to the FP32 one), and a row cancelling to an exact zero.
TEST_P(KernelPathTest, GemvEveryPairRaggedLongRows) {
  const uint32_t seed = kSeed + 21;
  std::mt19937 rng(seed);
  const size_t N = 21, K = 67 * kBlockSize, nb = K / kBlockSize;
  std::vector<std::pair<MxFormat, MxFormat>> pairs;
  for (MxFormat f : kAllFormats) pairs.push_back({f, f});
  pairs.push_back({MxFormat::E2M1, MxFormat::E2M3});
  pairs.push_back({MxFormat::INT8, MxFormat::E2M1});
  pairs.push_back({MxFormat::E3M2, MxFormat::INT8});
  pairs.push_back({MxFormat::E3M2, MxFormat::E2M1});
  pairs.push_back({MxFormat::E4M3, MxFormat::E5M2});
  pairs.push_back({MxFormat::E5M2, MxFormat::E4M3});
  const std::string what = "GEMV seed " + std::to_string(seed);
  for (const auto& [fa, fw] : pairs) {
    MxMat A = quantized_mx(fa, 1, K, rng);
    MxMat W = quantized_mx(fw, N, K, rng);
    check_gemm(A, W, cfg(), what + " quantized");
    check_gemm(A, W, cfg(1), what + " quantized, 1 thread");
    // Row 20 (the partial tile) = -row 0 where the format is symmetric: exact zero results.
    const MxMat Ar = random_mx(fa, 1, K, rng, 100, 150);
    const MxMat Wr = random_mx(fw, N, K, rng, 100, 150);
    check_gemm(Ar, Wr, cfg(), what + " random codes");
    MxMat We = Wr;
    We.scales[3 * nb + 66] = 1;  // extreme scales: the FP64 block step in tiles 0 and 2
    We.scales[17 * nb + 64] = 253;
    We.scales[18 * nb + 2] = kScaleNaN;
    MxMat Ae = A;
    Ae.scales[65] = 254;
    check_gemm(Ae, We, cfg(), what + " extreme / NaN scales");
    Ae.scales[7] = kScaleNaN;
    check_gemm(Ae, W, cfg(), what + " NaN scale in A");
    // A zero result from cancelling blocks: A's block 1 = block 0 negated (same scale), W's
    // blocks 0 and 1 equal, everything else zero.
    MxMat Az = A, Wz = W;
    const uint8_t sign = uint8_t(1u << (format_bits(fa) - 1));
    for (size_t k = 0; k < K; ++k) {
      if (k >= 2 * kBlockSize) Az.unpacked[k] = 0;
      for (size_t r = 0; r < N; ++r)
        if (k >= 2 * kBlockSize)
          Wz.unpacked[r * K + k] = 0;
        else if (k >= kBlockSize)
          Wz.unpacked[r * K + k] = Wz.unpacked[r * K + k - kBlockSize];
    }
    for (size_t k = 0; k < kBlockSize; ++k) {
      const uint8_t c = Az.unpacked[k];
      // INT8 is two's complement: negate the value; the float formats flip the sign bit.
      Az.unpacked[kBlockSize + k] =
          format_info(fa).is_int ? uint8_t(c == 0x80 ? 0x81 : -int8_t(c)) : uint8_t(c ^ sign);
      if (format_info(fa).is_int && c == 0x80) Az.unpacked[k] = 0x7F;
    }
    Az.scales[1] = Az.scales[0];
    for (size_t r = 0; r < N; ++r) Wz.scales[r * nb + 1] = Wz.scales[r * nb];
    pack_codes(fa, Az.unpacked.data(), K, Az.codes.data());
    for (size_t r = 0; r < N; ++r)
      pack_codes(fw, &Wz.unpacked[r * K], K, &Wz.codes[r * packed_bytes(fw, K)]);
    check_gemm(Az, Wz, cfg(), what + " cancelling blocks");
    if (format_info(fw).has_nan) {
      // A NaN element code in one weight row with a finite A (a tile rerun on another route).
      MxMat Wn = W;
      Wn.unpacked[5 * K + 100] = 0x7F;
      pack_codes(fw, &Wn.unpacked[5 * K], K, &Wn.codes[5 * packed_bytes(fw, K)]);
      check_gemm(A, Wn, cfg(), what + " NaN weight code");
    }
    if (format_info(fa).has_nan && format_info(fw).has_nan) {
      // Every element at the largest finite magnitude, signs equal / alternating: the largest
      // block sums of each route.
      MxMat Am = A, Wm = W;
      const uint8_t amax = fa == MxFormat::E4M3 ? 0x7E : 0x7B;
      const uint8_t wmax = fw == MxFormat::E4M3 ? 0x7E : 0x7B;
      for (size_t k = 0; k < K; ++k) Am.unpacked[k] = amax;
      for (size_t r = 0; r < N; ++r)
        for (size_t k = 0; k < K; ++k)
          Wm.unpacked[r * K + k] = uint8_t(wmax | ((r % 2) && (k % 2) ? 0x80 : 0));
      pack_codes(fa, Am.unpacked.data(), K, Am.codes.data());
      for (size_t r = 0; r < N; ++r)
        pack_codes(fw, &Wm.unpacked[r * K], K, &Wm.codes[r * packed_bytes(fw, K)]);
      check_gemm(Am, Wm, cfg(), what + " largest magnitudes");
    }
  }
}

// gemv_quantized == golden quantize_row of x, then dot_blocked with every weight row, for every
// activation format against the weight formats of every route; x with FP32 edge values (NaN,
// Inf, subnormals: NaN-scale blocks) and a non-default quantize option.
TEST_P(KernelPathTest, GemvQuantizedActivationMatchesGolden) {
  const uint32_t seed = kSeed + 22;
  std::mt19937 rng(seed);
  const size_t N = 19, K = 37 * kBlockSize;
  for (MxFormat fa : kAllFormats)
    for (MxFormat fw : kAllFormats) {
      const MxMat W = quantized_mx(fw, N, K, rng);
      const std::vector<float> x = random_values(K, rng, true);
      for (int variant = 0; variant < 2; ++variant) {
        QuantizeOptions opt;
        if (variant == 1) opt.scale_rule = ScaleRule::RCEIL;
        MxMat A{fa, 1, K, {}, {}, std::vector<uint8_t>(K)};
        A.scales.resize(K / kBlockSize);
        quantize_row(fa, x.data(), K, A.scales.data(), A.unpacked.data(), opt);
        std::vector<float> y(N, 12345.0f);
        gemv_quantized(x.data(), fa, W.view(), y.data(), opt, cfg());
        for (size_t n = 0; n < N; ++n) {
          const float ref = dot_blocked(A.vec(0), W.vec(n), K);
          ASSERT_TRUE(same_float(y[n], ref))
              << "A=" << format_name(fa) << " W=" << format_name(fw) << " variant " << variant
              << " n " << n << ": " << y[n] << " vs golden " << ref << " seed " << seed;
        }
      }
    }
}

// Back-to-back small calls on the thread pool with more threads than cores (workers that wake
// late find the tasks done, and must not touch the next call's tasks): the same bits as 1 thread.
TEST_P(KernelPathTest, ManySmallCallsOnThePool) {
  std::mt19937 rng(kSeed + 12);
  const MxMat W = random_mx(MxFormat::E2M1, 200, 256, rng);
  for (size_t M : {size_t(1), size_t(9)}) {
    const MxMat A = random_mx(MxFormat::E2M1, M, 256, rng);
    std::vector<float> ref(M * W.rows), c(M * W.rows);
    gemm(A.view(), W.view(), ref.data(), W.rows, cfg(1));
    for (int it = 0; it < 300; ++it) {
      std::fill(c.begin(), c.end(), 0.0f);
      gemm(A.view(), W.view(), c.data(), W.rows, cfg(it % 2 ? 4 : 3));
      ASSERT_EQ(0, std::memcmp(ref.data(), c.data(), c.size() * 4)) << "call " << it << " M=" << M;
    }
  }
}

// Mixed: the stated bound against an exact reference (golden dot_exact where the FP32 activations
// are MX values; an exact long-double-free check via dot_exact of the same values).
TEST_P(KernelPathTest, MixedFp32AndBf16WithinStatedBound) {
  std::mt19937 rng(kSeed + 6);
  const double u = std::ldexp(1.0, -24);
  for (MxFormat fw : kAllFormats)
    for (size_t M : {size_t(1), size_t(3), size_t(17)}) {
      const size_t N = 11, K = 1056;
      const MxMat W = random_mx(fw, N, K, rng, 120, 134, 0, true);
      // Activations that are exact E4M3 values, so dot_exact(A_mx, W_mx) is the exact dot of the
      // FP32 operands the kernel sees.
      const MxMat Amx = random_mx(MxFormat::E4M3, M, K, rng, 120, 134, 0, true);
      std::vector<float> A(M * K);
      for (size_t m = 0; m < M; ++m)
        dequantize_row(MxFormat::E4M3, &Amx.scales[m * K / kBlockSize], &Amx.unpacked[m * K], K,
                       &A[m * K]);
      std::vector<float> wdq(K);
      std::vector<float> C(M * N), Cb(M * N);
      gemm_f32(A.data(), M, K, W.view(), C.data(), N, cfg());
      std::vector<uint16_t> Ab(M * K);
      for (size_t i = 0; i < A.size(); ++i) Ab[i] = fp32_to_bf16(A[i]);  // E4M3 values: exact
      gemm_bf16(Ab.data(), M, K, W.view(), Cb.data(), N, cfg());
      for (size_t n = 0; n < N; ++n) {
        dequantize_row(fw, &W.scales[n * K / kBlockSize], &W.unpacked[n * K], K, wdq.data());
        for (size_t m = 0; m < M; ++m) {
          const float exact = dot_exact(Amx.vec(m), W.vec(n), K);
          double abs_sum = 0;
          bool finite = std::isfinite(exact);
          for (size_t k = 0; k < K; ++k) {
            abs_sum += std::fabs(double(A[m * K + k]) * wdq[k]);
            finite &= std::isfinite(wdq[k]);
          }
          const float got = C[m * N + n];
          ASSERT_TRUE(same_float(got, Cb[m * N + n])) << "bf16 and fp32 activations differ";
          ASSERT_TRUE(finite) << "finite operands expected";
          const double nn = double(K) / 8 + 4;
          const double bound =
              nn * u / (1 - nn * u) * abs_sum * (1 + 1e-6) + K * std::ldexp(1.0, -149);
          ASSERT_LE(std::fabs(double(got) - double(exact)), bound)
              << format_name(fw) << " M=" << M << " (" << m << "," << n << ") got " << got
              << " exact " << exact << " seed " << kSeed + 6;
        }
      }
    }
}

TEST_P(KernelPathTest, MixedScalarAndSimdAgreeBitForBit) {
  std::mt19937 rng(kSeed + 7);
  for (MxFormat fw : kAllFormats)
    for (size_t M : {size_t(1), size_t(3)}) {  // M = 1: the register-decoding GEMV kernel
      const size_t N = 19, K = 2400, nb = K / kBlockSize;  // nb > 64: GEMV scale runs
      // Ordinary scales; the full E8M0 range with NaN scales (subnormal / Inf weights); ordinary
      // scales with a few extreme codes (0, 1, 2, 252, NaN) in some rows, the others finite.
      for (int extreme = 0; extreme < 3; ++extreme) {
        MxMat W =
            extreme == 1 ? random_mx(fw, N, K, rng, 0, 254, 5) : random_mx(fw, N, K, rng, 110, 140);
        if (extreme == 2) {
          W.scales[0 * nb + 3] = 0;
          W.scales[1 * nb + 70] = 1;
          W.scales[2 * nb + 64] = 2;
          W.scales[3 * nb + 66] = 252;
          W.scales[5 * nb + 71] = kScaleNaN;
          W.scales[9 * nb + 8] = 0;
        }
        std::vector<float> A = random_values(M * K, rng, false);
        std::vector<float> C(M * N), Cs(M * N);
        gemm_f32(A.data(), M, K, W.view(), C.data(), N, cfg());
        gemm_f32(A.data(), M, K, W.view(), Cs.data(), N, {KernelPath::Scalar, 1});
        for (size_t i = 0; i < C.size(); ++i)
          ASSERT_TRUE(same_float(C[i], Cs[i]))
              << format_name(fw) << " M=" << M << " extreme=" << extreme << " i=" << i << " "
              << C[i] << " vs scalar " << Cs[i];
      }
    }
}

// The integer kernels' worst cases: every element at the format's largest magnitude (INT8 -128
// included), signs all equal or alternating, so pair sums and block sums reach their bounds.
TEST_P(KernelPathTest, GemmIntegerKernelsAtMagnitudeBounds) {
  std::mt19937 rng(kSeed + 8);
  const MxFormat small[] = {MxFormat::E2M1, MxFormat::E2M3, MxFormat::E3M2, MxFormat::INT8};
  for (MxFormat fa : small)
    for (MxFormat fw : small) {
      const size_t M = 4, N = 9, K = 96;
      MxMat A = random_mx(fa, M, K, rng), W = random_mx(fw, N, K, rng);
      for (MxMat* x : {&A, &W}) {
        const FormatInfo& fi = format_info(x->f);
        // Largest positive and most negative codes.
        const uint8_t pos = fi.is_int ? 0x7F : uint8_t((1u << (fi.bits - 1)) - 1);
        const uint8_t neg = fi.is_int ? 0x80 : uint8_t((1u << fi.bits) - 1);
        for (size_t r = 0; r < x->rows; ++r)
          for (size_t k = 0; k < K; ++k) {
            const int pattern = int(r % 3);
            x->unpacked[r * K + k] = pattern == 0 ? pos : pattern == 1 ? neg : (k % 2 ? pos : neg);
          }
        const size_t rb = packed_bytes(x->f, K);
        for (size_t r = 0; r < x->rows; ++r)
          pack_codes(x->f, &x->unpacked[r * K], K, &x->codes[r * rb]);
      }
      check_gemm(A, W, cfg(), "magnitude bounds");
      for (size_t r = 0; r < A.rows; ++r) check_gemm(row_of(A, r), W, cfg(), "GEMV bounds");
    }
}

INSTANTIATE_TEST_SUITE_P(Paths, KernelPathTest, ::testing::ValuesIn(kAllPaths),
                         [](const auto& info) { return std::string(path_name(info.param)); });

TEST(KernelsApi, RejectsBadShapesAndPadsRows) {
  std::vector<float> x(3 * 40, 1.5f), padded(3 * 64, -1.0f);
  pad_rows(x.data(), 3, 40, padded.data());
  for (size_t r = 0; r < 3; ++r)
    for (size_t k = 0; k < 64; ++k) EXPECT_EQ(padded[r * 64 + k], k < 40 ? 1.5f : 0.0f);
  std::vector<uint8_t> c(3 * 64), s(3 * 2);
  EXPECT_THROW(quantize(MxFormat::E4M3, x.data(), 3, 40, c.data(), s.data()),
               std::invalid_argument);
  EXPECT_EQ(block_sum_kind(MxFormat::E2M1, MxFormat::INT8), BlockSumKind::Int16);
  EXPECT_EQ(block_sum_kind(MxFormat::E4M3, MxFormat::E4M3), BlockSumKind::Double);
  EXPECT_EQ(block_sum_kind(MxFormat::E5M2, MxFormat::E5M2), BlockSumKind::Wide);
  for (KernelPath p : kAllPaths)
    std::printf("[ path     ] %-6s %s\n", path_name(p),
                path_available(p) ? "available" : "unavailable on this CPU");
}

}  // namespace
}  // namespace dmx::kernels
