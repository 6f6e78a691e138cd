// GEMM / GEMV drivers: operand decoding, tiling over weight rows, threads, path dispatch. The
// scalar path computes every block with the exact 128-bit block step.
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
      aexp[mj] = sa == kScaleNaN ? detail::kNaNExp : int(sa) - kScaleBias + qa;
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
      tb.e[c] = c == kScaleNaN ? detail::kNaNExp : c - kScaleBias + q;
      tb.f[c] = c == kScaleNaN ? 0.0f : pow2_f32(tb.e[c]);
      tb.d[c] = detail::scale_factor_d(uint8_t(c), q);
    }
    return tb;
  };
  const ScaleTab wtab = make_tab(qw);
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
    detail::parallel_for(tiles, threads, [&](size_t t) {
      const size_t n0 = t * kTileRows;
      thread_local std::vector<uint8_t> sc;
      const size_t stride = nb + 4;
      sc.assign(kTileRows * stride, 0);
      detail::Fp4GemvArgs args{};
      for (int r = 0; r < kTileRows; ++r) {
        const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
        args.rows[r] = row_codes(W, n);
        std::memcpy(&sc[r * stride], W.scales + n * nb, nb);
      }
      const std::function<float(size_t, int, size_t)> fix = [&](size_t, int r, size_t j) {
        const size_t n = std::min(n0 + r, N - 1);
        uint8_t wcodes[kBlockSize];
        detail::unpack_range(W.format, row_codes(W, n), j * kBlockSize, kBlockSize, wcodes);
        return detail::exact_block(A.format, A.scales[j], &Ac[j * kBlockSize], W.format,
                                   W.scales[n * nb + j], wcodes);
      };
      alignas(32) float acc[kTileRows];
      std::fill(acc, acc + kTileRows, -0.0f);
      args.nb = nb;
      args.a = ap.data();
      args.acorr = acorr.data();
      args.aexp = aexp.data();
      args.afac_d = afac_d.data();
      args.sc = sc.data();
      args.sc_stride = stride;
      args.qw = qw;
      args.lut16 = lut16;
      args.acc = acc;
      args.fix = &fix;
      detail::fp4_gemv_rows8_avx2(args);
      for (int r = 0; r < kTileRows && n0 + r < N; ++r) C[n0 + r] = acc[r];
    });
    return;
  }
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

void gemm(const MxMatrixView& A, const MxMatrixView& W, float* C, size_t ldc,
          const KernelConfig& cfg) {
  check_shapes(A, W, ldc);
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (size_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, -0.0f);
    return;
  }
  const KernelPath path = usable(cfg.path);
  const BlockSumKind kind = block_sum_kind(A.format, W.format);
  const size_t tiles = (N + kTileRows - 1) / kTileRows;

  // A's codes unpacked once (both the SIMD decode and the exact corner cases read them).
  std::vector<uint8_t> Ac(M * K);
  for (size_t m = 0; m < M; ++m) detail::unpack_range(A.format, row_codes(A, m), 0, K, &Ac[m * K]);

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
  if (M == 1 && path != KernelPath::Scalar && format_bits(W.format) != 6) {
    // GEMV: the packed weights streamed once, decoded in registers (same lanes, same order).
    detail::parallel_for(tiles, cfg.threads, [&](size_t t) {
      const size_t n0 = t * kTileRows;
      const uint8_t* rows[kTileRows];
      const uint8_t* sc[kTileRows];
      for (int r = 0; r < kTileRows; ++r) {
        const size_t n = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
        rows[r] = row_codes(W, n);
        sc[r] = W.scales + n * nb;
      }
      alignas(32) float lanes[kTileRows * 8];
      std::fill(lanes, lanes + kTileRows * 8, -0.0f);
      detail::mixed_gemv_rows8_avx2(W.format, A, rows, sc, nb, lanes);
      for (int r = 0; r < kTileRows && n0 + r < N; ++r) finish(lanes + r * 8, 0, n0 + r);
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
        detail::unpack_range(W.format, row_codes(W, row), k0, n, wc.data());
        for (size_t i = 0; i < n; ++i)
          dst[i] = tw.unit[wc[i]] * decode_scale(W.scales[row * nb + (k0 + i) / kBlockSize]);
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
