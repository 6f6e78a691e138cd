// GEMM / GEMV drivers: operand decoding, tiling over weight rows, threads, path dispatch. The
// scalar path computes every block with the exact 128-bit block step.
#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.h"

namespace dmx::kernels {
namespace {

using detail::FormatTable;
using detail::table;

constexpr int kTileRows = 8;  // weight rows per tile (one SIMD lane each in the epilogue)

KernelPath usable(KernelPath p) { return path_available(p) ? p : default_path(); }

void check_shapes(const MxMatrixView& A, const MxMatrixView& W, size_t ldc) {
  if (A.cols != W.cols)
    throw std::invalid_argument("dmx::kernels::gemm: A.cols (" + std::to_string(A.cols) +
                                ") != W.cols (" + std::to_string(W.cols) + ")");
  if (W.cols % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm: K = " + std::to_string(W.cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (ldc < W.rows) throw std::invalid_argument("dmx::kernels::gemm: ldc < N");
}

const uint8_t* row_codes(const MxMatrixView& m, size_t r) {
  return m.codes + r * packed_row_bytes(m.format, m.cols);
}

// unpack_range on a SIMD path: FP6 with the AVX2 unpacker (the others are byte copies / cheap).
void unpack_codes_simd(MxFormat f, const uint8_t* row, size_t k0, size_t n, uint8_t* out) {
  if (format_bits(f) == 6)
    detail::unpack_fp6_avx2(row + k0 / kBlockSize * 24, n / kBlockSize, out);
  else
    detail::unpack_range(f, row, k0, n, out);
}

// fn(m0, m1) over ranges of rows [0, M) (multiples of 4 rows, but for the last), on the pool when
// the operand is large enough to pay for waking it (M * K >= 2^14 elements), else on the caller.
template <class F>
void for_row_ranges(size_t M, size_t K, int threads, const F& fn) {
  if (threads <= 1 || M < 8 || M * K < (size_t(1) << 14)) {
    fn(size_t(0), M);
    return;
  }
  const size_t groups = (M + 3) / 4;
  const size_t tasks = std::min(groups, size_t(4) * size_t(threads));
  const size_t per = (groups + tasks - 1) / tasks;  // row groups per task
  detail::parallel_for((groups + per - 1) / per, threads, [&](size_t t) {
    fn(std::min(M, t * per * 4), std::min(M, (t + 1) * per * 4));
  });
}

// 2^e as FP32 (e >= -149 and <= 127), from the bits.
float pow2_f32(int e) {
  const uint32_t b = e >= -126 ? uint32_t(e + 127) << 23 : uint32_t(1) << (e + 149);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// MX x MX where both formats' values are small integers in quanta (BlockSumKind::Int16): the
// operands are decoded once (A) and once per tile chunk (W) to integers, block sums are exact in
// int32 and |sum| < 2^24. The int8 kernel (vpmaddubsw) takes W as u8 = value + rw and A as s8 and
// subtracts rw * sum(A block); it applies when the pair sums 2 * 2rw * ra stay below 2^15.
void gemm_int(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
              float* C, size_t ldc, int threads) {
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  const FormatInfo& ia = format_info(A.format);
  const FormatInfo& iw = format_info(W.format);
  const int ra = int(ia.max_magnitude) + (ia.is_int ? 1 : 0);  // largest |A| in quanta
  const int rw = int(iw.max_magnitude) + (iw.is_int ? 1 : 0);
  const bool int8 = !iw.is_int && 2 * rw <= 255 && ra <= 128 && 2 * (2 * rw) * ra <= 32767;
  const int woff = int8 ? rw : 0;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  const int qa = ia.quantum_exp, qw = iw.quantum_exp;

  // A: integers in quanta, block corrections, scale exponents and factors.
  std::vector<int8_t> A8(int8 ? M * K : 0);
  std::vector<int16_t> A16(int8 ? 0 : M * K);
  std::vector<int32_t> acorr(int8 ? M * nb : 0), aexp(M * nb);
  std::vector<float> afac_f(M * nb);
  std::vector<double> afac_d(M * nb);
  for (size_t m = 0; m < M; ++m) {
    for (size_t j = 0; j < nb; ++j) {
      int32_t sum = 0;
      for (size_t i = j * kBlockSize; i < (j + 1) * kBlockSize; ++i) {
        const int16_t v = ta.q16[Ac[m * K + i]];
        sum += v;
        if (int8)
          A8[m * K + i] = int8_t(v);
        else
          A16[m * K + i] = v;
      }
      const size_t mj = m * nb + j;
      if (int8) acorr[mj] = woff * sum;
      const uint8_t sa = A.scales[mj];
      aexp[mj] = detail::scale_exp(sa, qa);
      afac_f[mj] = sa == kScaleNaN ? 0.0f : pow2_f32(aexp[mj]);
      afac_d[mj] = detail::scale_factor_d(sa, qa);
    }
  }
  // Per scale code: exponent (kNaNExp for NaN), 2^e as FP32 and as double, for W.
  struct ScaleTab {
    int32_t e[256];
    float f[256];
    double d[256];
  };
  const auto make_tab = [](int q) {
    ScaleTab tb;
    for (int c = 0; c < 256; ++c) {
      tb.e[c] = detail::scale_exp(c, q);
      tb.f[c] = c == kScaleNaN ? 0.0f : pow2_f32(tb.e[c]);
      tb.d[c] = detail::scale_factor_d(uint8_t(c), q);
    }
    return tb;
  };
  // FP4 weights: a 16-entry table straight from the packed nibbles.
  int8_t lut16[16] = {};
  if (format_bits(W.format) == 4)
    for (int c = 0; c < 16; ++c) lut16[c] = int8_t(tw.q16[c] + woff);

  const size_t tiles = (N + kTileRows - 1) / kTileRows;
  if (M == 1 && int8 && format_bits(W.format) == 4) {
    // GEMV: A permuted to the nibble order of the packed weights, weights read once.
    const size_t nbp = (nb + 1) / 2 * 2;
    std::vector<int8_t> ap(nbp * kBlockSize, 0);
    for (size_t j = 0; j < nb; ++j)
      for (int i = 0; i < kBlockSize; ++i)
        ap[(j / 2) * 64 + (i % 2) * 32 + (j % 2) * 16 + i / 2] = A8[j * kBlockSize + i];
    int ea_min = 1 << 30, ea_max = -(1 << 30);
    for (size_t j = 0; j < nb; ++j) {
      ea_min = std::min(ea_min, int(aexp[j]));
      ea_max = std::max(ea_max, int(aexp[j]));
    }
    constexpr size_t kTilesPerTask = 4;  // 32 rows a task: less per-task overhead
    const size_t rb = packed_row_bytes(W.format, K);
    detail::parallel_for((tiles + kTilesPerTask - 1) / kTilesPerTask, threads, [&](size_t task) {
      thread_local std::vector<uint8_t> sc;
      const size_t stride = nb + 4;
      sc.resize(kTileRows * stride);
      uint8_t* scp = sc.data();
      size_t n0 = 0;
      const std::function<float(size_t, int, size_t)> fix = [&](size_t, int r, size_t j) {
        const size_t n = std::min(n0 + r, N - 1);
        uint8_t wcodes[kBlockSize];
        detail::unpack_range(W.format, row_codes(W, n), j * kBlockSize, kBlockSize, wcodes);
        return detail::exact_block(A.format, A.scales[j], &Ac[j * kBlockSize], W.format,
                                   W.scales[n * nb + j], wcodes);
      };
      for (size_t t = task * kTilesPerTask; t < std::min(tiles, (task + 1) * kTilesPerTask); ++t) {
        n0 = t * kTileRows;
        if (n0 + kTileRows < N) {  // the next tile's scales (contiguous rows)
          const char* ns = reinterpret_cast<const char*>(W.scales + (n0 + kTileRows) * nb);
          const size_t bytes = std::min<size_t>(kTileRows, N - n0 - kTileRows) * nb;
          for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(ns + o, _MM_HINT_T0);
        }
        detail::Fp4GemvArgs args;  // every field set below (no zeroing per tile)
        // The kernel reads 4 scale bytes at a time (up to 3 past a row's last block): rows with
        // a next row in W are read in place, the tile holding W's last row from a padded copy.
        const bool direct = n0 + kTileRows < N;
        for (int r = 0; r < kTileRows; ++r) {
          const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
          args.rows[r] = W.codes + n * rb;
          if (!direct) {
            std::memcpy(scp + r * stride, W.scales + n * nb, nb);
            std::memset(scp + r * stride + nb, 0, 4);
          }
        }
        // The tile's scale range (its rows are contiguous in W.scales).
        __m128i vmin = _mm_set1_epi8(char(0xFF)), vmax = _mm_setzero_si128();
        int sb_min = 255, sb_max = 0;
        {
          const uint8_t* s0 = W.scales + n0 * nb;
          const size_t len = (std::min(n0 + kTileRows, N) - n0) * nb;
          size_t i = 0;
          for (; i + 16 <= len; i += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + i));
            vmin = _mm_min_epu8(vmin, v);
            vmax = _mm_max_epu8(vmax, v);
          }
          // Horizontal min / max of the 16 bytes.
          vmin = _mm_min_epu8(vmin, _mm_srli_si128(vmin, 8));
          vmax = _mm_max_epu8(vmax, _mm_srli_si128(vmax, 8));
          vmin = _mm_min_epu8(vmin, _mm_srli_si128(vmin, 4));
          vmax = _mm_max_epu8(vmax, _mm_srli_si128(vmax, 4));
          vmin = _mm_min_epu8(vmin, _mm_srli_si128(vmin, 2));
          vmax = _mm_max_epu8(vmax, _mm_srli_si128(vmax, 2));
          vmin = _mm_min_epu8(vmin, _mm_srli_si128(vmin, 1));
          vmax = _mm_max_epu8(vmax, _mm_srli_si128(vmax, 1));
          sb_min = _mm_cvtsi128_si32(vmin) & 0xFF;
          sb_max = _mm_cvtsi128_si32(vmax) & 0xFF;
          for (; i < len; ++i) {
            sb_min = std::min<int>(sb_min, s0[i]);
            sb_max = std::max<int>(sb_max, s0[i]);
          }
        }
        // e = sb - 127 + qw + ea over the tile within [-126, 103], no NaN scale: fast block step.
        args.fast = sb_max != kScaleNaN && ea_max != detail::kNaNExp &&
                    sb_min - kScaleBias + qw + ea_min >= -126 &&
                    sb_max - kScaleBias + qw + ea_max <= 103;
        alignas(32) float acc[kTileRows];
        std::fill(acc, acc + kTileRows, -0.0f);
        args.nb = nb;
        args.a = ap.data();
        args.acorr = acorr.data();
        args.aexp = aexp.data();
        args.afac_d = afac_d.data();
        args.sc = direct ? W.scales + n0 * nb : scp;
        args.sc_stride = direct ? nb : stride;
        args.qw = qw;
        args.lut16 = lut16;
        args.acc = acc;
        args.fix = &fix;
        args.pf = nullptr;
        args.pf_bytes = 0;
        if (n0 + kTileRows < N) {  // the next tile's rows (contiguous), up to the end of W
          args.pf = W.codes + (n0 + kTileRows) * rb;
          args.pf_bytes = std::min<size_t>(kTileRows, N - n0 - kTileRows) * rb;
        }
        detail::fp4_gemv_rows8_avx2(args);
        for (int r = 0; r < kTileRows && n0 + r < N; ++r) {
          if (args.fast && acc[r] == 0.0f) {  // a zero sum's sign needs the codes: exact redo
            acc[r] = -0.0f;
            for (size_t j = 0; j < nb; ++j) acc[r] += fix(0, r, j);
          }
          C[n0 + r] = acc[r];
        }
      }
    });
    return;
  }
  const ScaleTab wtab = make_tab(qw);  // (not needed by the GEMV above)
  const size_t chunk = 32;  // blocks per chunk: an 8 KiB (int8) / 16 KiB (int16) weight tile
  const size_t esize = int8 ? 1 : 2;
  detail::parallel_for(tiles, threads, [&](size_t t) {
    const size_t n0 = t * kTileRows;
    thread_local std::vector<unsigned char> wt;
    thread_local std::vector<uint8_t> wc;
    wt.resize(kTileRows * chunk * kBlockSize * esize);
    wc.resize(chunk * kBlockSize);
    int32_t wexp_min[chunk], wexp_max[chunk];
    float wfac_f[chunk * kTileRows];
    double wfac_d[chunk * kTileRows];
    std::vector<float> acc(M * kTileRows, -0.0f);
    const std::function<float(size_t, int, size_t)> fix = [&](size_t m, int r, size_t j) {
      const size_t n = n0 + r;
      if (n >= N) return 0.0f;
      uint8_t wcodes[kBlockSize];
      detail::unpack_range(W.format, row_codes(W, n), j * kBlockSize, kBlockSize, wcodes);
      return detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize],
                                 W.format, W.scales[n * nb + j], wcodes);
    };
    for (size_t j0 = 0; j0 < nb; j0 += chunk) {
      const size_t j1 = std::min(nb, j0 + chunk), nj = j1 - j0;
      for (size_t jj = 0; jj < nj; ++jj) {
        wexp_min[jj] = 1 << 20;
        wexp_max[jj] = -(1 << 20);
      }
      for (int r = 0; r < kTileRows; ++r) {
        const size_t n = n0 + r;
        unsigned char* dst = wt.data() + r * kBlockSize * esize;  // block jj at + jj * 8 * 32
        const size_t stride = kTileRows * kBlockSize;             // elements
        if (n >= N) {
          for (size_t jj = 0; jj < nj; ++jj) {
            std::memset(dst + jj * stride * esize, 0, kBlockSize * esize);
            wfac_f[jj * kTileRows + r] = 0.0f;
            wfac_d[jj * kTileRows + r] = 0.0;
          }
          continue;
        }
        const uint8_t* row = row_codes(W, n);
        if (format_bits(W.format) == 4) {
          detail::decode_fp4_blocks_avx2(row + j0 * kBlockSize / 2, nj, lut16, !int8, dst, stride);
        } else if (iw.is_int && !int8) {
          detail::widen_i8_blocks_avx2(reinterpret_cast<const int8_t*>(row + j0 * kBlockSize), nj,
                                       reinterpret_cast<int16_t*>(dst), stride);
        } else {
          detail::unpack_range(W.format, row, j0 * kBlockSize, nj * kBlockSize, wc.data());
          for (size_t jj = 0; jj < nj; ++jj)
            for (int i = 0; i < kBlockSize; ++i) {
              const int v = tw.q16[wc[jj * kBlockSize + i]] + woff;
              if (int8)
                dst[jj * stride + i] = uint8_t(v);
              else
                reinterpret_cast<int16_t*>(dst)[jj * stride + i] = int16_t(v);
            }
        }
        for (size_t jj = 0; jj < nj; ++jj) {
          const uint8_t sb = W.scales[n * nb + j0 + jj];
          const int eb = wtab.e[sb];
          wexp_min[jj] = std::min(wexp_min[jj], eb);
          wexp_max[jj] = std::max(wexp_max[jj], eb);
          wfac_f[jj * kTileRows + r] = wtab.f[sb];
          wfac_d[jj * kTileRows + r] = wtab.d[sb];
        }
      }
      const void* Adec = int8 ? static_cast<const void*>(A8.data()) : A16.data();
      detail::IntTileArgs args{M,
                               nb,
                               j0,
                               j1,
                               K,
                               Adec,
                               wt.data(),
                               int8 ? acorr.data() : nullptr,
                               aexp.data(),
                               afac_f.data(),
                               afac_d.data(),
                               wexp_min,
                               wexp_max,
                               wfac_f,
                               wfac_d,
                               acc.data(),
                               &fix};
      int8 ? detail::int8_tile_avx2(args) : detail::int16_tile_avx2(args);
    }
    for (size_t m = 0; m < M; ++m)
      for (int r = 0; r < kTileRows && n0 + r < N; ++r)
        C[m * ldc + n0 + r] = acc[m * kTileRows + r];
  });
}

// MX x MX, BlockSumKind::Int16, M >= 2: the interleaved kernels (internal.h, IntMicroArgs). W is
// packed per task (a panel of 32 columns) and per K chunk; A is decoded once per call. The int8
// kernel applies when W's values fit s8, A + ra fits u8 (ra = largest |A|), the vpmaddubsw pair
// sums cannot saturate and a run of at least one group keeps its int16 lane sums in range.
struct IntScheme {
  bool int8;   // the vpmaddubsw kernel (else int16 / vpmaddwd)
  int ra, G;   // largest |A| in quanta (the u8 offset); groups of 4 k per int16 run (int8)
  size_t gpb;  // dword groups per block: 8 (int8) or 16 (int16)
};
IntScheme int_scheme(MxFormat fa, MxFormat fw) {
  const FormatTable& ta = table(fa);
  const FormatTable& tw = table(fw);
  int amin = 0, amax = 0, wmin = 0, wmax = 0;
  for (int c = 0; c < (1 << format_bits(fa)); ++c) {
    amin = std::min<int>(amin, ta.q16[c]);
    amax = std::max<int>(amax, ta.q16[c]);
  }
  for (int c = 0; c < (1 << format_bits(fw)); ++c) {
    wmin = std::min<int>(wmin, tw.q16[c]);
    wmax = std::max<int>(wmax, tw.q16[c]);
  }
  const int ra = std::max(-amin, amax), rw = std::max(-wmin, wmax);
  int G = 0;  // groups (of 4 k) per int16 run: lane sums over 2G k bounded by 2G * ra * rw
  for (int g = 8; g >= 1 && G == 0; g /= 2)
    if (2 * g * ra * rw <= 32767) G = g;
  const bool int8 =
      wmin >= -128 && wmax <= 127 && amax + ra <= 255 && 2 * (amax + ra) * rw <= 32767 && G > 0;
  return {int8, ra, int8 ? G : 1, size_t(int8 ? 8 : 16)};
}

constexpr size_t kPanel = 32, kChunk = 32;  // columns per task; blocks per K chunk

// One panel (32 columns from n0) and K chunk (nbc blocks from j0) of W as the micro-kernels read
// it: wp per tile of 8 columns (q) at q * 8 * kChunk * gpb dwords; corr (int8) per tile at
// q * kChunk * (8 / G) * 16; wexp23 per tile at q * kChunk * 8; gw_min / gw_max per 16 columns
// (p) at p * kChunk. Columns past N: zero weights at scale exponent 0 (results discarded).
struct IntPanelBufs {
  int32_t* wp;
  int16_t* corr;
  int32_t* wexp23;
  int32_t* gw_min;
  int32_t* gw_max;
};
size_t int_wp_dwords(const IntScheme& sc) { return 4 * 8 * kChunk * sc.gpb; }
size_t int_corr_tile(const IntScheme& sc) { return kChunk * size_t(8 / sc.G) * 16; }

// wdec: 8 * kChunk * gpb dwords of scratch; wc: kChunk * 32 bytes of scratch.
void pack_int_panel(const MxMatrixView& W, const IntScheme& sc, size_t n0, size_t j0, size_t nbc,
                    const IntPanelBufs& b, int32_t* wdec, uint8_t* wc) {
  const size_t N = W.rows, nb = W.cols / kBlockSize;
  const FormatTable& tw = table(W.format);
  const int qw = format_info(W.format).quantum_exp;
  const bool int8 = sc.int8;
  const size_t gpb = sc.gpb, dw_chunk = kChunk * gpb;  // dwords per column per chunk
  int32_t eb[kPanel];
  for (size_t jj = 0; jj < nbc; ++jj) {
    for (size_t c = 0; c < kPanel; ++c) {
      const size_t n = n0 + c;
      const uint8_t sb = n < N ? W.scales[n * nb + j0 + jj] : uint8_t(kScaleBias - qw);
      eb[c] = detail::scale_exp(sb, qw);
      b.wexp23[(c / 8) * kChunk * 8 + jj * 8 + c % 8] =
          sb == kScaleNaN ? 0 : int32_t(uint32_t(eb[c] + 127) << 23);
    }
    for (size_t p = 0; p < 2; ++p) {
      b.gw_min[p * kChunk + jj] = *std::min_element(eb + 16 * p, eb + 16 * p + 16);
      b.gw_max[p * kChunk + jj] = *std::max_element(eb + 16 * p, eb + 16 * p + 16);
    }
  }
  for (size_t q = 0; q < 4 && n0 + 8 * q < N; ++q) {
    // 8 columns decoded (s8 / int16 in k order, dword rows), then interleaved.
    for (size_t c = 0; c < 8; ++c) {
      const size_t n = n0 + 8 * q + c;
      int32_t* dst = &wdec[c * dw_chunk];
      if (n >= N) {
        std::fill(dst, dst + nbc * gpb, 0);
        continue;
      }
      const uint8_t* row = row_codes(W, n);
      if (format_bits(W.format) == 4) {
        int8_t lut16[16];
        for (int i = 0; i < 16; ++i) lut16[i] = int8_t(tw.q16[i]);
        detail::decode_fp4_blocks_avx2(row + j0 * kBlockSize / 2, nbc, lut16, !int8, dst,
                                       kBlockSize);
      } else if (format_info(W.format).is_int && int8) {
        std::memcpy(dst, row + j0 * kBlockSize, nbc * kBlockSize);
      } else if (format_info(W.format).is_int) {
        detail::widen_i8_blocks_avx2(reinterpret_cast<const int8_t*>(row + j0 * kBlockSize), nbc,
                                     reinterpret_cast<int16_t*>(dst), kBlockSize);
      } else {
        const int16_t* q16 = tw.q16;
        const size_t n_el = nbc * kBlockSize;
        unpack_codes_simd(W.format, row, j0 * kBlockSize, n_el, wc);
        if (int8 && format_bits(W.format) == 6) {  // |values| <= 127 here (int8 kernel)
          int8_t mag32[32];
          for (int i = 0; i < 32; ++i) mag32[i] = int8_t(q16[i]);
          detail::decode_fp6_s8_avx2(wc, n_el, mag32, reinterpret_cast<int8_t*>(dst));
        } else if (int8) {
          int8_t* d8 = reinterpret_cast<int8_t*>(dst);
          for (size_t i = 0; i < n_el; ++i) d8[i] = int8_t(q16[wc[i]]);
        } else if (format_bits(W.format) <= 6) {  // FP6 codes (FP4 took the branch above)
          detail::lut64_i16_avx2(wc, n_el, q16, reinterpret_cast<int16_t*>(dst));
        } else {
          int16_t* d16 = reinterpret_cast<int16_t*>(dst);
          for (size_t i = 0; i < n_el; ++i) d16[i] = q16[wc[i]];
        }
      }
    }
    int32_t* wq = &b.wp[q * 8 * dw_chunk];
    detail::transpose_dwords8_avx2(wdec, dw_chunk, nbc * gpb, wq);
    if (int8)
      detail::int8_corrections_avx2(reinterpret_cast<const int8_t*>(wq), nbc * 8, sc.G, sc.ra,
                                    &b.corr[q * int_corr_tile(sc)]);
  }
}

}  // namespace

namespace detail {
// W prepacked for the interleaved integer GEMM: every (panel, chunk) of pack_int_panel.
struct PackedInt {
  IntScheme sc;
  size_t panels = 0, chunks = 0;
  std::vector<int32_t> wp, wexp23, gw;
  std::vector<int16_t> corr;
  IntPanelBufs at(size_t panel, size_t chunk) {
    const size_t i = panel * chunks + chunk;
    return {&wp[i * int_wp_dwords(sc)], sc.int8 ? &corr[i * 4 * int_corr_tile(sc)] : nullptr,
            &wexp23[i * 4 * kChunk * 8], &gw[i * 4 * kChunk], &gw[i * 4 * kChunk + 2 * kChunk]};
  }
};
}  // namespace detail

namespace {

void gemm_int_interleaved(const MxMatrixView& A, const MxMatrixView& W,
                          const std::vector<uint8_t>& Ac, float* C, size_t ldc, int threads,
                          detail::PackedInt* pre) {
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  const int qa = format_info(A.format).quantum_exp, qw = format_info(W.format).quantum_exp;
  const IntScheme sc = int_scheme(A.format, W.format);
  const bool int8 = sc.int8;
  const int ra = sc.ra, G = sc.G;

  // A: u8 (value + ra) or int16 values; scale exponents, also as ea << 23; per 4-row group the
  // min / max exponent of each block (rows past M repeat the last row). Ranges of 4-row groups on
  // the pool; codes of at most 6 bits to u8 through a vector 64-entry table (the scalar loop is
  // its reference and the other formats' route).
  const size_t ngr = (M + 3) / 4;
  std::vector<uint8_t> Au(int8 ? M * K : 0);
  std::vector<int16_t> A16(int8 ? 0 : M * K);
  std::vector<int32_t> aexp(M * nb), aexp23(M * nb);
  std::vector<int32_t> ga_min(ngr * nb), ga_max(ngr * nb);
  uint8_t lut64[64] = {};
  const bool lut_a = int8 && format_bits(A.format) <= 6;
  if (lut_a)
    for (int c = 0; c < (1 << format_bits(A.format)); ++c) lut64[c] = uint8_t(ta.q16[c] + ra);
  const bool widen_a = !int8 && format_info(A.format).is_int;  // INT8 codes are the values
  for_row_ranges(M, K, threads, [&](size_t m0, size_t m1) {
    if (lut_a) {
      detail::lut64_bytes_avx2(&Ac[m0 * K], (m1 - m0) * K, lut64, &Au[m0 * K]);
    } else if (widen_a) {
      detail::widen_i8_blocks_avx2(reinterpret_cast<const int8_t*>(&Ac[m0 * K]), (m1 - m0) * nb,
                                   &A16[m0 * K], kBlockSize);
    } else if (!int8 && format_bits(A.format) <= 6) {
      detail::lut64_i16_avx2(&Ac[m0 * K], (m1 - m0) * K, ta.q16, &A16[m0 * K]);
    } else {
      for (size_t i = m0 * K; i < m1 * K; ++i) {
        const int v = ta.q16[Ac[i]];
        if (int8)
          Au[i] = uint8_t(v + ra);
        else
          A16[i] = int16_t(v);
      }
    }
    for (size_t i = m0 * nb; i < m1 * nb; ++i) {
      const uint8_t sa = A.scales[i];
      aexp[i] = detail::scale_exp(sa, qa);
      aexp23[i] = sa == kScaleNaN ? 0 : int32_t(uint32_t(aexp[i]) << 23);
    }
    for (size_t g = m0 / 4; g < (m1 + 3) / 4; ++g)
      for (size_t j = 0; j < nb; ++j) {
        int lo = 1 << 30, hi = -(1 << 30);
        for (size_t r = 0; r < 4; ++r) {
          const size_t m = std::min(4 * g + r, M - 1);
          const uint8_t sa = A.scales[m * nb + j];  // (row M - 1 may lie in another range)
          const int e = detail::scale_exp(sa, qa);
          lo = std::min(lo, e);
          hi = std::max(hi, e);
        }
        ga_min[g * nb + j] = lo;
        ga_max[g * nb + j] = hi;
      }
  });

  const size_t gpb = sc.gpb;  // dword groups per block
  const size_t panels = (N + kPanel - 1) / kPanel;
  detail::parallel_for(panels, threads, [&](size_t task) {
    const size_t n0 = task * kPanel;
    thread_local std::vector<int32_t> wdec, wp, wexp23;
    thread_local std::vector<int16_t> corr;
    thread_local std::vector<int32_t> gw;
    thread_local std::vector<float> accp;
    thread_local std::vector<uint8_t> wc;
    const size_t dw_chunk = kChunk * gpb;  // dwords per column per chunk
    if (!pre) {
      wdec.resize(8 * dw_chunk);
      wp.resize(int_wp_dwords(sc));
      wexp23.resize(4 * kChunk * 8);
      corr.resize(4 * int_corr_tile(sc));
      gw.resize(4 * kChunk);
      wc.resize(kChunk * kBlockSize);
    }
    accp.resize(ngr * 4 * kPanel);  // set to -0 by the first chunk's micro-kernel calls
    const size_t ncols = std::min(kPanel, N - n0);
    std::vector<std::pair<size_t, size_t>> zeros;  // (m, c) of zero results
    // The exact FP64 block step for the micro-tile (row group cur_g, pair cur_p, chunk cur_j0);
    // built once per task (no std::function per micro-kernel call).
    size_t cur_g = 0, cur_p = 0, cur_j0 = 0;
    const std::function<void(int, int, size_t, const int32_t*, float*)> slow =
        [&](int r, int t, size_t jj, const int32_t* sv, float* acc8) {
          const size_t m = std::min(4 * cur_g + r, M - 1), j = cur_j0 + jj;
          const double fa = detail::scale_factor_d(A.scales[m * nb + j], qa);
          for (int l = 0; l < 8; ++l) {
            const size_t n = n0 + 16 * cur_p + 8 * t + l;
            if (n >= N) continue;
            acc8[l] += float(double(sv[l]) * fa * detail::scale_factor_d(W.scales[n * nb + j], qw));
          }
        };
    for (size_t j0 = 0; j0 < nb; j0 += kChunk) {
      const size_t nbc = std::min(kChunk, nb - j0);
      // Prepacked panels leave the scratch buffers empty: only index them when packing here.
      IntPanelBufs bufs;
      if (pre) {
        bufs = pre->at(task, j0 / kChunk);
      } else {
        bufs = {wp.data(), corr.data(), wexp23.data(), gw.data(), gw.data() + 2 * kChunk};
        pack_int_panel(W, sc, n0, j0, nbc, bufs, wdec.data(), wc.data());
      }
      // Row groups in batches of up to kGroupBatch full groups per micro-kernel call (the last,
      // partial group alone: its missing rows repeat row M - 1), both column halves per batch.
      constexpr size_t kGroupBatch = 8;
      const size_t nfull = M / 4;
      for (size_t g0 = 0; g0 < ngr;) {
        const size_t ng = g0 < nfull ? std::min(kGroupBatch, nfull - g0) : 1;
        for (size_t p = 0; p < 2 && n0 + 16 * p < N; ++p) {
          detail::IntMicroArgs args;  // every field set below (no zeroing per call)
          args.nbc = nbc;
          for (int r = 0; r < 4; ++r) {
            const size_t m = std::min(4 * g0 + r, M - 1);
            args.a[r] = int8 ? static_cast<const void*>(&Au[m * K + j0 * kBlockSize])
                             : static_cast<const void*>(&A16[m * K + j0 * kBlockSize]);
            args.aexp23[r] = &aexp23[m * nb + j0];
          }
          args.ga_min = &ga_min[g0 * nb + j0];
          args.ga_max = &ga_max[g0 * nb + j0];
          for (int t = 0; t < 2; ++t) {
            const size_t q = 2 * p + t;
            args.w[t] = &bufs.wp[q * 8 * dw_chunk];
            args.corr[t] = int8 ? &bufs.corr[q * int_corr_tile(sc)] : nullptr;
            args.wexp23[t] = &bufs.wexp23[q * kChunk * 8];
          }
          args.gw_min = &bufs.gw_min[p * kChunk];
          args.gw_max = &bufs.gw_max[p * kChunk];
          args.acc = &accp[4 * g0 * kPanel + 16 * p];
          args.acc_stride = kPanel;
          args.init = j0 == 0;
          args.ngroups = ng;
          args.a_stride = K;
          args.e_stride = nb;
          args.g_stride = nb;
          cur_g = g0;
          cur_p = p;
          cur_j0 = j0;
          args.slow = &slow;
          if (int8)
            detail::int8_micro_avx2(args, G);
          else
            detail::int16_micro_avx2(args);
        }
        const size_t g_end = g0 + ng;
        for (size_t g = g0; g < g_end; ++g)
          if (j0 + nbc == nb) {  // last chunk: the group's rows are final, written while hot
            for (size_t m = 4 * g; m < std::min(M, 4 * g + 4); ++m) {
              const float* src = &accp[m * kPanel];
              float* dst = C + m * ldc + n0;
              bool any_zero = false;
              if (ncols == kPanel && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
                // Full rows of the panel: streamed (C is not read here; no read-for-ownership).
                for (size_t c = 0; c < kPanel; c += 4) {
                  const __m128 v = _mm_loadu_ps(src + c);
                  _mm_stream_ps(dst + c, v);
                  any_zero |= _mm_movemask_ps(_mm_cmpeq_ps(v, _mm_setzero_ps())) != 0;
                }
              } else {
                for (size_t c = 0; c < ncols; ++c) {
                  dst[c] = src[c];
                  any_zero |= src[c] == 0.0f;
                }
              }
              if (any_zero)
                for (size_t c = 0; c < ncols; ++c)
                  if (src[c] == 0.0f) zeros.emplace_back(m, c);
            }
          }
        g0 = g_end;
      }
    }
    _mm_sfence();
    // Only zero block sums can differ from the contract (they give +0 where r_j may be -0), and
    // that shows only when every r_j is zero: a zero result with a block whose integer sum is
    // nonzero and whose scale exponent keeps s * 2^(ea+eb) >= 2^-149 (so r_j != 0) is right;
    // other zero results are recomputed exactly.
    if (!zeros.empty()) {
      std::sort(zeros.begin(), zeros.end(),
                [](const auto& x, const auto& y) { return x.second < y.second; });
      std::vector<uint8_t> wrow(K);
      size_t cur = SIZE_MAX;
      for (const auto& [m, c] : zeros) {
        const size_t n = n0 + c;
        if (n != cur) {
          detail::unpack_range(W.format, row_codes(W, n), 0, K, wrow.data());
          cur = n;
        }
        bool nonzero = false;
        for (size_t j = 0; j < nb && !nonzero; ++j) {
          const uint8_t sb = W.scales[n * nb + j];
          if (sb == kScaleNaN || aexp[m * nb + j] == detail::kNaNExp) continue;
          if (aexp[m * nb + j] + int(sb) - kScaleBias + qw < -149) continue;
          int32_t sum = 0;
          for (size_t i = j * kBlockSize; i < (j + 1) * kBlockSize; ++i)
            sum += int32_t(ta.q16[Ac[m * K + i]]) * tw.q16[wrow[i]];
          nonzero = sum != 0;
        }
        if (nonzero) continue;
        float v = -0.0f;
        for (size_t j = 0; j < nb; ++j)
          v += detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize],
                                   W.format, W.scales[n * nb + j], &wrow[j * kBlockSize]);
        C[m * ldc + n] = v;
      }
    }
  });
}

// Exponent range of a block for the Wide-pair exactness check: every nonzero finite value v of
// the block satisfies 2^lo <= ulp(v) and |v| < 2^hi (element values at scale 1).
struct ExpRange {
  int hi, lo;
};
struct CodeExp {
  int hi[256], lo[256];  // per code; zero / non-finite codes: hi = -1000, lo = 1000
};
CodeExp code_exponents(MxFormat f) {
  CodeExp ce;
  const FormatInfo& fi = format_info(f);
  const FormatTable& tb = table(f);
  for (int c = 0; c < 256; ++c) {
    ce.hi[c] = -1000;
    ce.lo[c] = 1000;
    const double v = std::fabs(tb.unit_d[c]);
    if (c >= (1 << fi.bits) || tb.special[c] || v == 0.0) continue;
    const int e = std::ilogb(v);  // floor(log2 v)
    ce.hi[c] = e + 1;
    ce.lo[c] = std::max(e - fi.mbits, fi.quantum_exp);
  }
  return ce;
}

// MX x MX with FP64 block sums (BlockSumKind::Double; Wide pairs with a per-block exactness
// check, falling back to the exact step), M >= 2: the interleaved FP64 kernel (F64MicroArgs).
void gemm_f64_interleaved(const MxMatrixView& A, const MxMatrixView& W,
                          const std::vector<uint8_t>& Ac, float* C, size_t ldc, int threads,
                          bool wide) {
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  std::vector<double> Ad(M * K), afac(M * nb);
  const size_t ngr = (M + 3) / 4;
  CodeExp cea{}, cew{};
  std::vector<ExpRange> ga;  // per row group and block: max hi, min lo over the 4 rows
  if (wide) {
    cea = code_exponents(A.format);
    cew = code_exponents(W.format);
    ga.assign(ngr * nb, ExpRange{-1000, 1000});
  }
  // A on the pool over 4-row groups (a group's rows lie in one range).
  for_row_ranges(M, K, threads, [&](size_t m0, size_t m1) {
    for (size_t i = m0 * K; i < m1 * K; ++i) Ad[i] = ta.unit_d[Ac[i]];
    for (size_t i = m0 * nb; i < m1 * nb; ++i) afac[i] = detail::scale_factor_d(A.scales[i], 0);
    if (wide)
      for (size_t m = m0; m < m1; ++m)
        for (size_t j = 0; j < nb; ++j) {
          ExpRange& e = ga[(m / 4) * nb + j];
          for (size_t i = j * kBlockSize; i < (j + 1) * kBlockSize; ++i) {
            e.hi = std::max(e.hi, cea.hi[Ac[m * K + i]]);
            e.lo = std::min(e.lo, cea.lo[Ac[m * K + i]]);
          }
        }
  });
  constexpr size_t kCols = 12, kChunk = 8;  // columns per task; blocks per K chunk
  const size_t panels = (N + kCols - 1) / kCols;
  detail::parallel_for(panels, threads, [&](size_t task) {
    const size_t n0 = task * kCols, ncols = std::min(kCols, N - n0);
    thread_local std::vector<double> wp, wfac;
    thread_local std::vector<uint8_t> wcodes, fast;
    thread_local std::vector<float> accp;
    wp.resize(kChunk * kBlockSize * kCols);
    wfac.resize(kChunk * kCols);
    wcodes.resize(kCols * kChunk * kBlockSize);
    fast.resize(ngr * kChunk);
    accp.resize(ngr * 4 * kCols);
    double* wpp = wp.data();
    uint8_t* wcp = wcodes.data();
    size_t cur_g = 0, cur_j0 = 0, cur_nk = 0;  // the micro-tile of the slow step (one function)
    const std::function<void(int, int, size_t, float*)> slow = [&](int r, int c, size_t jj,
                                                                   float* acc1) {
      const size_t m = std::min(4 * cur_g + r, M - 1), n = std::min(n0 + c, N - 1), j = cur_j0 + jj;
      *acc1 +=
          detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize], W.format,
                              W.scales[n * nb + j], wcp + c * cur_nk + jj * kBlockSize);
    };
    for (size_t j0 = 0; j0 < nb; j0 += kChunk) {
      const size_t nbc = std::min(kChunk, nb - j0), nk = nbc * kBlockSize;
      ExpRange gw[kChunk];
      for (size_t jj = 0; jj < nbc; ++jj) gw[jj] = ExpRange{-1000, 1000};
      for (size_t c = 0; c < kCols; ++c) {
        const size_t n = n0 + c;
        uint8_t* codes = wcp + c * nk;
        if (n < N)
          unpack_codes_simd(W.format, row_codes(W, n), j0 * kBlockSize, nk, codes);
        else
          std::memset(codes, 0, nk);
        for (size_t i = 0; i < nk; ++i) wpp[i * kCols + c] = n < N ? tw.unit_d[codes[i]] : 0.0;
        for (size_t jj = 0; jj < nbc; ++jj) {
          wfac[jj * kCols + c] =
              n < N ? detail::scale_factor_d(W.scales[n * nb + j0 + jj], 0) : 0.0;
          if (wide && n < N)
            for (size_t i = jj * kBlockSize; i < (jj + 1) * kBlockSize; ++i) {
              gw[jj].hi = std::max(gw[jj].hi, cew.hi[codes[i]]);
              gw[jj].lo = std::min(gw[jj].lo, cew.lo[codes[i]]);
            }
        }
      }
      if (wide)  // exact: |partial sums| < 2^(hi_a + hi_w + 5) in units of 2^(lo_a + lo_w)
        for (size_t g = 0; g < ngr; ++g)
          for (size_t jj = 0; jj < nbc; ++jj) {
            const ExpRange& e = ga[g * nb + j0 + jj];
            fast[g * kChunk + jj] = e.hi + gw[jj].hi + 5 - (e.lo + gw[jj].lo) <= 53;
          }
      for (size_t g = 0; g < ngr; ++g) {
        detail::F64MicroArgs args{};
        args.nbc = nbc;
        for (int r = 0; r < 4; ++r) {
          const size_t m = std::min(4 * g + r, M - 1);
          args.a[r] = &Ad[m * K + j0 * kBlockSize];
          args.afac[r] = &afac[m * nb + j0];
        }
        args.w = wpp;
        args.wfac = wfac.data();
        args.fast = wide ? &fast[g * kChunk] : nullptr;
        args.acc = &accp[4 * g * kCols];
        args.acc_stride = kCols;
        args.init = j0 == 0;
        cur_g = g;
        cur_j0 = j0;
        cur_nk = nk;
        args.slow = &slow;
        detail::f64_micro_avx2(args);
        if (j0 + nbc == nb)
          for (size_t m = 4 * g; m < std::min(M, 4 * g + 4); ++m)
            std::memcpy(C + m * ldc + n0, &accp[m * kCols], ncols * sizeof(float));
      }
    }
  });
}

// Wide pairs (E5M2 x E5M2, E5M2 x E4M3), SIMD paths: operands decoded once to signed 64-bit
// integers in quanta, block sums in 128 bits (one 64x64->128 multiply per element), one rounding
// by golden's round_to_fp32. Blocks with a NaN scale, a NaN/Inf code or a zero sum (whose sign
// needs the codes) take the exact scalar step.
void gemm_wide(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
               float* C, size_t ldc, int threads) {
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  const int qsum = format_info(A.format).quantum_exp + format_info(W.format).quantum_exp;
  const auto value = [](const FormatTable& tb, uint8_t c) {
    return tb.neg[c] ? -int64_t(tb.mag[c]) : int64_t(tb.mag[c]);
  };
  std::vector<int64_t> Av(M * K);
  std::vector<uint8_t> Aspecial(M * nb, 0);
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < K; ++k) {
      const uint8_t c = Ac[m * K + k];
      Av[m * K + k] = value(ta, c);
      Aspecial[m * nb + k / kBlockSize] |=
          ta.special[c] | (A.scales[m * nb + k / kBlockSize] == kScaleNaN);
    }
  const size_t tiles = (N + kTileRows - 1) / kTileRows;
  detail::parallel_for(tiles, threads, [&](size_t t) {
    std::vector<uint8_t> wc(K), wspecial(nb);
    std::vector<int64_t> wv(K);
    for (size_t n = t * kTileRows; n < std::min(N, (t + 1) * kTileRows); ++n) {
      detail::unpack_range(W.format, row_codes(W, n), 0, K, wc.data());
      std::fill(wspecial.begin(), wspecial.end(), uint8_t{0});
      for (size_t k = 0; k < K; ++k) {
        wv[k] = value(tw, wc[k]);
        wspecial[k / kBlockSize] |=
            tw.special[wc[k]] | (W.scales[n * nb + k / kBlockSize] == kScaleNaN);
      }
      for (size_t m = 0; m < M; ++m) {
        float acc = -0.0f;
        const int64_t* a = &Av[m * K];
        for (size_t j = 0; j < nb; ++j) {
          const uint8_t sa = A.scales[m * nb + j], sb = W.scales[n * nb + j];
          __int128 sum = 0;
          if (!Aspecial[m * nb + j] && !wspecial[j]) {
            for (size_t i = j * kBlockSize; i < (j + 1) * kBlockSize; ++i)
              sum += static_cast<__int128>(a[i]) * wv[i];
          }
          if (sum == 0) {  // a special block, or a zero sum (its sign needs the codes)
            acc += detail::exact_block(A.format, sa, &Ac[m * K + j * kBlockSize], W.format, sb,
                                       &wc[j * kBlockSize]);
            continue;
          }
          const bool neg = sum < 0;
          const unsigned __int128 mag =
              neg ? -static_cast<unsigned __int128>(sum) : static_cast<unsigned __int128>(sum);
          acc += round_to_fp32(neg, mag, int(sa) + int(sb) - 2 * kScaleBias + qsum);
        }
        C[m * ldc + n] = acc;
      }
    }
  });
}

}  // namespace

namespace {
void gemm_impl(const MxMatrixView& A, const MxMatrixView& W, detail::PackedInt* pre, float* C,
               size_t ldc, const KernelConfig& cfg) {
  check_shapes(A, W, ldc);
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (size_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, -0.0f);
    return;
  }
  const KernelPath path = usable(cfg.path);
  if (M == 1) {
    // AVX-512 without VBMI / DQ: the AVX2 GEMV kernels.
    const KernelPath gp = detail::gemv_path(path);
    if (detail::gemv_mx_available(A.format, W.format, gp)) {
      detail::gemv_mx(A, W, C, cfg.threads, gp);  // weights streamed once from the packed codes
      return;
    }
  }
  const BlockSumKind kind = block_sum_kind(A.format, W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;

  // A's codes unpacked once (both the SIMD decode and the exact corner cases read them).
  std::vector<uint8_t> Ac(M * K);
  for_row_ranges(M, K, cfg.threads, [&](size_t m0, size_t m1) {
    for (size_t m = m0; m < m1; ++m) {
      if (path == KernelPath::Scalar)
        detail::unpack_range(A.format, row_codes(A, m), 0, K, &Ac[m * K]);
      else
        unpack_codes_simd(A.format, row_codes(A, m), 0, K, &Ac[m * K]);
    }
  });

  if (kind != BlockSumKind::Int16 && path != KernelPath::Scalar && M >= 2) {
    gemm_f64_interleaved(A, W, Ac, C, ldc, cfg.threads, kind == BlockSumKind::Wide);
    return;
  }
  if (kind == BlockSumKind::Wide && path != KernelPath::Scalar) {
    gemm_wide(A, W, Ac, C, ldc, cfg.threads);
    return;
  }
  if (path == KernelPath::Scalar) {
    detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
      std::vector<uint8_t> wc(K);
      for (size_t n = t * kTileRows; n < std::min(N, (t + 1) * kTileRows); ++n) {
        detail::unpack_range(W.format, row_codes(W, n), 0, K, wc.data());
        for (size_t m = 0; m < M; ++m) {
          float acc = -0.0f;  // -0 + r_0 == r_0: the contract's C
          for (size_t j = 0; j < nb; ++j)
            acc += detail::exact_block(A.format, A.scales[m * nb + j], &Ac[m * K + j * kBlockSize],
                                       W.format, W.scales[n * nb + j], &wc[j * kBlockSize]);
          C[m * ldc + n] = acc;
        }
      }
    });
    return;
  }

  if (kind == BlockSumKind::Int16) {
    if (M >= 2)
      gemm_int_interleaved(A, W, Ac, C, ldc, cfg.threads, pre);
    else
      gemm_int(A, W, Ac, C, ldc, cfg.threads);
    return;
  }

  // Double block sums: A decoded to exact element values as double.
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  std::vector<double> Adec(M * K);
  std::vector<double> afac(M * nb);
  for (size_t m = 0; m < M; ++m) {
    for (size_t k = 0; k < K; ++k) Adec[m * K + k] = ta.unit_d[Ac[m * K + k]];
    for (size_t j = 0; j < nb; ++j)
      afac[m * nb + j] = detail::scale_factor_d(A.scales[m * nb + j], 0);
  }

  const size_t chunk = 8;  // blocks per chunk: a 16 KiB decoded weight tile
  detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
    const size_t n0 = t * kTileRows;
    std::vector<uint8_t> wc(kTileRows * chunk * kBlockSize);
    std::vector<double> wt(kTileRows * chunk * kBlockSize);
    std::vector<double> wfac(kTileRows * chunk);
    std::vector<float> acc(M * kTileRows, -0.0f);
    for (size_t j0 = 0; j0 < nb; j0 += chunk) {
      const size_t j1 = std::min(nb, j0 + chunk), nj = j1 - j0;
      for (int r = 0; r < kTileRows; ++r) {
        const size_t n = n0 + r;
        uint8_t* dst = &wc[r * chunk * kBlockSize];
        if (n < N)
          detail::unpack_range(W.format, row_codes(W, n), j0 * kBlockSize, nj * kBlockSize, dst);
        else
          std::fill(dst, dst + nj * kBlockSize, uint8_t{0});
        for (size_t j = j0; j < j1; ++j) {
          wfac[(j - j0) * kTileRows + r] =
              n < N ? detail::scale_factor_d(W.scales[n * nb + j], 0) : 0.0;
          const uint8_t* src = dst + (j - j0) * kBlockSize;
          double* o = &wt[((j - j0) * kTileRows + r) * kBlockSize];
          if (detail::decode_block_double_avx2(W.format, src, o)) continue;
          for (int i = 0; i < kBlockSize; ++i) o[i] = tw.unit_d[src[i]];
        }
      }
      detail::TileArgs args{M,         nb,          j0,          j1,         K,      Adec.data(),
                            wt.data(), afac.data(), wfac.data(), acc.data(), nullptr};
      if (path == KernelPath::AVX512)
        detail::double_tile_avx512(args);
      else
        detail::double_tile_avx2(args);
    }
    for (size_t m = 0; m < M; ++m)
      for (int r = 0; r < kTileRows && n0 + r < N; ++r)
        C[m * ldc + n0 + r] = acc[m * kTileRows + r];
  });
}

}  // namespace

void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  gemm_impl(A, W, nullptr, C, ldc, cfg);
}

PackedWeights pack_weights(const MxMatrixView& W, MxFormat a_format, const KernelConfig& cfg) {
  if (W.cols % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::pack_weights: K = " + std::to_string(W.cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
  PackedWeights pw;
  pw.view_ = W;
  pw.a_format_ = a_format;
  const KernelPath path = usable(cfg.path);
  if (path == KernelPath::Scalar || block_sum_kind(a_format, W.format) != BlockSumKind::Int16 ||
      W.rows == 0 || W.cols == 0)
    return pw;  // no prepacked kernel: gemm() takes the per-call route
  auto pk = std::make_shared<detail::PackedInt>();
  pk->sc = int_scheme(a_format, W.format);
  const size_t nb = W.cols / kBlockSize;
  pk->panels = (W.rows + kPanel - 1) / kPanel;
  pk->chunks = (nb + kChunk - 1) / kChunk;
  const size_t pc = pk->panels * pk->chunks;
  pk->wp.assign(pc * int_wp_dwords(pk->sc), 0);
  pk->wexp23.assign(pc * 4 * kChunk * 8, 0);
  pk->gw.assign(pc * 4 * kChunk, 0);
  if (pk->sc.int8) pk->corr.assign(pc * 4 * int_corr_tile(pk->sc), 0);
  detail::parallel_for(pc, cfg.threads, [&](size_t i) {
    std::vector<int32_t> wdec(8 * kChunk * pk->sc.gpb);
    std::vector<uint8_t> wc(kChunk * kBlockSize);
    const size_t panel = i / pk->chunks, j0 = (i % pk->chunks) * kChunk;
    pack_int_panel(W, pk->sc, panel * kPanel, j0, std::min(kChunk, nb - j0),
                   pk->at(panel, i % pk->chunks), wdec.data(), wc.data());
  });
  pw.packed_ = std::move(pk);
  return pw;
}

void gemm(const MxMatrixView& A, const PackedWeights& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  // The prepacked layout serves the A format it was packed for on a SIMD path at M >= 2; any
  // other call computes from the weights' view (the same bits either way).
  detail::PackedInt* pre =
      W.packed_ && A.format == W.a_format_ && A.rows >= 2 && usable(cfg.path) != KernelPath::Scalar
          ? W.packed_.get()
          : nullptr;
  gemm_impl(A, W.view_, pre, C, ldc, cfg);
}

void gemm_f32(const float* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
              const KernelConfig& cfg) {
  const size_t N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (K % kBlockSize != 0)
    throw std::invalid_argument("dmx::kernels::gemm_f32: K = " + std::to_string(K) +
                                " is not a multiple of 32 (pad with pad_rows)");
  if (lda < K || ldc < N) throw std::invalid_argument("dmx::kernels::gemm_f32: lda < K or ldc < N");
  if (M == 0 || N == 0) return;
  const KernelPath path = usable(cfg.path);
  const FormatTable& tw = table(W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;
  const auto finish = [&](const float* lanes, size_t m, size_t n) {
    const float* v = lanes;
    const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
    C[m * ldc + n] = (s0 + s2) + (s1 + s3);
  };
  if (M == 1 && path == KernelPath::AVX512 && detail::cpu_has_avx512_vbmi()) {
    detail::gemv_f32_avx512(A, W, C, cfg.threads);  // every format, two rows per vector
    return;
  }
  if (M == 1 && path != KernelPath::Scalar && format_bits(W.format) != 6) {
    // GEMV: the packed weights streamed once, decoded in registers (same lanes, same order).
    constexpr size_t kTilesPerTask = 4;  // 32 rows a task
    const size_t rb = packed_row_bytes(W.format, K);
    detail::parallel_for(
        (tiles + kTilesPerTask - 1) / kTilesPerTask, cfg.threads, [&](size_t task) {
          for (size_t t = task * kTilesPerTask; t < std::min(tiles, (task + 1) * kTilesPerTask);
               ++t) {
            const size_t n0 = t * kTileRows;
            const uint8_t* rows[kTileRows];
            const uint8_t* sc[kTileRows];
            for (int r = 0; r < kTileRows; ++r) {
              const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
              rows[r] = W.codes + n * rb;
              sc[r] = W.scales + n * nb;
            }
            alignas(32) float lanes[kTileRows * 8];
            std::fill(lanes, lanes + kTileRows * 8, -0.0f);
            // The next tile's rows (contiguous) are prefetched linearly alongside.
            const uint8_t* pf = n0 + kTileRows < N ? W.codes + (n0 + kTileRows) * rb : nullptr;
            const size_t pf_bytes = pf ? std::min<size_t>(kTileRows, N - n0 - kTileRows) * rb : 0;
            detail::mixed_gemv_rows8_avx2(W.format, A, rows, sc, nb, lanes, pf, pf_bytes);
            for (int r = 0; r < kTileRows && n0 + r < N; ++r) finish(lanes + r * 8, 0, n0 + r);
          }
        });
    return;
  }
  constexpr size_t kc = 512;  // K columns per chunk: a 16 KiB dequantized weight tile
  detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
    const size_t n0 = t * kTileRows;
    std::vector<uint8_t> wc(kc);
    std::vector<float> wf(kTileRows * kc);
    std::vector<float> lanes(M * kTileRows * 8, -0.0f);
    for (size_t k0 = 0; k0 < K; k0 += kc) {
      const size_t n = std::min(kc, K - k0);
      for (int r = 0; r < kTileRows; ++r) {
        float* dst = &wf[r * kc];
        if (n0 + r >= N) {
          std::fill(dst, dst + n, 0.0f);
          continue;
        }
        const size_t row = n0 + r;
        if (path != KernelPath::Scalar && format_bits(W.format) != 6) {
          detail::dequantize_row_avx2(W.format, row_codes(W, row) + packed_bytes(W.format, k0),
                                      W.scales + row * nb + k0 / kBlockSize, n, dst);
          continue;
        }
        if (path == KernelPath::Scalar)
          detail::unpack_range(W.format, row_codes(W, row), k0, n, wc.data());
        else  // FP6: the AVX2 unpacker
          unpack_codes_simd(W.format, row_codes(W, row), k0, n, wc.data());
        for (size_t b = 0; b < n / kBlockSize; ++b) {  // unit * scale, as dequantize_row
          const float sc = decode_scale(W.scales[row * nb + k0 / kBlockSize + b]);
          for (size_t i = b * kBlockSize; i < (b + 1) * kBlockSize; ++i)
            dst[i] = tw.unit[wc[i]] * sc;
        }
      }
      if (path == KernelPath::Scalar) {
        for (size_t m = 0; m < M; ++m)
          for (int r = 0; r < kTileRows; ++r) {
            float* ln = &lanes[(m * kTileRows + r) * 8];
            for (size_t k = 0; k < n; ++k)
              ln[k % 8] = std::fma(A[m * lda + k0 + k], wf[r * kc + k], ln[k % 8]);
          }
      } else {
        // The AVX-512 path shares this kernel: the 8-lane order is part of the mixed contract.
        detail::mixed_tile_avx2(M, A, lda, k0, n, wf.data(), kc, lanes.data());
      }
    }
    for (size_t m = 0; m < M; ++m)
      for (int r = 0; r < kTileRows && n0 + r < N; ++r)
        finish(&lanes[(m * kTileRows + r) * 8], m, n0 + r);
  });
}

void gemm_bf16(const uint16_t* A, size_t M, size_t lda, const MxMatrixView& W, float* C, size_t ldc,
               const KernelConfig& cfg) {
  // BF16 -> FP32 is exact; the FP32 kernel then applies unchanged.
  std::vector<float> Af(M * W.cols);
  for (size_t m = 0; m < M; ++m)
    for (size_t k = 0; k < W.cols; ++k) Af[m * W.cols + k] = bf16_to_fp32(A[m * lda + k]);
  gemm_f32(Af.data(), M, W.cols, W, C, ldc, cfg);
}

}  // namespace dmx::kernels
