// MX x MX GEMM with Int16 block sums at M = 1 on a SIMD path: weight tiles of 8 rows
// decoded per chunk to s8 / int16 in quanta, exact int32 block sums (gemm_driver.h).
#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm_driver.h"

namespace dmx::kernels::detail {

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

}  // namespace dmx::kernels::detail
