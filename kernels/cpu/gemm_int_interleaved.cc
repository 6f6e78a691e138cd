// MX x MX GEMM with Int16 block sums at M >= 2: W packed per panel of 32 columns and chunk of
// 32 blocks into the interleaved layout of the int8 (vpmaddubsw) / int16 (vpmaddwd) micro-kernels,
// per call or once (pack_weights); A decoded once per call.
#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm_driver.h"

namespace dmx::kernels::detail {

namespace {

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

std::shared_ptr<PackedInt> pack_int_weights(const MxMatrixView& W, MxFormat a_format, int threads) {
  auto pk = std::make_shared<PackedInt>();
  pk->sc = int_scheme(a_format, W.format);
  const size_t nb = W.cols / kBlockSize;
  pk->panels = (W.rows + kPanel - 1) / kPanel;
  pk->chunks = (nb + kChunk - 1) / kChunk;
  const size_t pc = pk->panels * pk->chunks;
  pk->wp.assign(pc * int_wp_dwords(pk->sc), 0);
  pk->wexp23.assign(pc * 4 * kChunk * 8, 0);
  pk->gw.assign(pc * 4 * kChunk, 0);
  if (pk->sc.int8) pk->corr.assign(pc * 4 * int_corr_tile(pk->sc), 0);
  detail::parallel_for(pc, threads, [&](size_t i) {
    std::vector<int32_t> wdec(8 * kChunk * pk->sc.gpb);
    std::vector<uint8_t> wc(kChunk * kBlockSize);
    const size_t panel = i / pk->chunks, j0 = (i % pk->chunks) * kChunk;
    pack_int_panel(W, pk->sc, panel * kPanel, j0, std::min(kChunk, nb - j0),
                   pk->at(panel, i % pk->chunks), wdec.data(), wc.data());
  });
  return pk;
}

}  // namespace dmx::kernels::detail
