// MX x MX GEMM with FP64 block sums: the interleaved FP64 kernel at M >= 2 (the Wide pairs with a
// per-block exactness check), the 8-row tiles at M = 1, and the Wide pairs' 128-bit route.
#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm_driver.h"

namespace dmx::kernels::detail {

namespace {

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

}  // namespace

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

// MX x MX with FP64 block sums (BlockSumKind::Double), M = 1 on a SIMD path: tiles of 8 weight
// rows decoded to doubles per chunk of blocks, A decoded once.
void gemm_double_tiles(const MxMatrixView& A, const MxMatrixView& W, const std::vector<uint8_t>& Ac,
                       float* C, size_t ldc, int threads, KernelPath path) {
  const size_t M = A.rows, N = W.rows, K = W.cols, nb = K / kBlockSize;
  const size_t tiles = (N + kTileRows - 1) / kTileRows;
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
  detail::parallel_for(tiles, threads, [&](size_t t) {
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

}  // namespace dmx::kernels::detail
