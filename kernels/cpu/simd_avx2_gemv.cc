// AVX2 M = 1 MX x MX GEMV kernels over 8 weight rows (driven by gemv_mx.cc; routes and block step
// in internal.h, MxGemvArgs): integer formats decoded per chunk of 16 blocks into an L1 int16
// tile (vpshufb tables) and summed exactly with vpmaddwd; FP8 weights go through FP16 patterns
// (F16C) to exact FP64 products. Only called when path_available(AVX2) (F16C comes with it).
#include <algorithm>
#include <cstring>

#include "internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "simd_avx2_common.h"

namespace dmx::kernels::detail {
namespace {

using namespace avx2;

constexpr size_t kChunk = 16;  // blocks per decoded chunk: 8 rows x 512 int16 = 8 KiB

// 2^(ea + eb) of the 8 rows as two vectors of doubles (rows 0-3, 4-7); NaN where a scale is NaN.
inline void block_factors(const MxGemvArgs& t, size_t j, __m256d* f0, __m256d* f1) {
  const __m128i sb8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.wsc + j * 8));
  const __m256i sb = _mm256_cvtepu8_epi32(sb8);
  const int ea = t.aexp[j];
  const __m256i e = _mm256_add_epi32(sb, _mm256_set1_epi32(ea - kScaleBias + t.wexp_off + 1023));
  const __m256d nanv = _mm256_set1_pd(__builtin_nan(""));
  const __m256i isnan =
      ea == kNaNExp ? _mm256_set1_epi32(-1) : _mm256_cmpeq_epi32(sb, _mm256_set1_epi32(kScaleNaN));
  const __m128i e0 = _mm256_castsi256_si128(e), e1 = _mm256_extracti128_si256(e, 1);
  const __m128i n0 = _mm256_castsi256_si128(isnan), n1 = _mm256_extracti128_si256(isnan, 1);
  *f0 = _mm256_blendv_pd(_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(e0), 52)),
                         nanv, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(n0)));
  *f1 = _mm256_blendv_pd(_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepi32_epi64(e1), 52)),
                         nanv, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(n1)));
}

inline void finish_block(__m256& acc, __m256 r, const MxGemvArgs& t, size_t j) {
  if (t.unsafe && t.unsafe[j]) {
    alignas(32) float r8[8];
    _mm256_store_ps(r8, r);
    (*t.patch)(j, r8);
    r = _mm256_load_ps(r8);
  }
  acc = _mm256_add_ps(acc, r);
}

inline void double_step(__m256& acc, __m256d s0, __m256d s1, const MxGemvArgs& t, size_t j) {
  __m256d f0, f1;
  block_factors(t, j, &f0, &f1);
  const __m256 r = _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(s1, f1)),
                                   _mm256_cvtpd_ps(_mm256_mul_pd(s0, f0)));
  finish_block(acc, r, t, j);
}

struct Prefetcher {
  const char* p = nullptr;
  size_t step = 0, end = 0;
  Prefetcher(const MxGemvArgs& t, size_t n) {
    if (!t.pf || !t.pf_bytes || !n) return;
    p = reinterpret_cast<const char*>(t.pf);
    step = ((t.pf_bytes + n - 1) / n + 63) / 64 * 64;
    end = t.pf_bytes;
  }
  void operator()(size_t i) const {
    if (!p) return;
    for (size_t o = i * step; o < std::min(end, (i + 1) * step); o += 64)
      _mm_prefetch(p + o, _MM_HINT_T0);
  }
};

void gemv_i16(const MxGemvArgs& t) {
  const int16_t* a = static_cast<const int16_t*>(t.a);
  const int bits = format_bits(t.wf);
  const size_t rb = size_t(bits) * kBlockSize / 8;
  alignas(32) int16_t w[8][kChunk * kBlockSize];
  alignas(32) uint8_t codes[kChunk * kBlockSize];
  alignas(16) int8_t lut16[16];
  alignas(32) uint8_t lut8[64];  // FP6 values as s8 bytes where they fit (E2M3)
  alignas(32) int8_t bytes[kChunk * kBlockSize];
  bool s8 = true;
  for (int c = 0; c < 64; ++c) {
    lut8[c] = uint8_t(int8_t(t.lut16w[c]));
    s8 = s8 && t.lut16w[c] >= -128 && t.lut16w[c] <= 127;
  }
  for (int c = 0; c < 16; ++c) lut16[c] = int8_t(t.lut16w[c]);
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, (t.nb + kChunk - 1) / kChunk);
  for (size_t j0 = 0; j0 < t.nb; j0 += kChunk) {
    prefetch(j0 / kChunk);
    const size_t nj = std::min(kChunk, t.nb - j0);
    for (int r = 0; r < 8; ++r) {
      const uint8_t* p = t.rows[r] + j0 * rb;
      if (bits == 8) {
        widen_i8_blocks_avx2(reinterpret_cast<const int8_t*>(p), nj, w[r], kBlockSize);
      } else if (bits == 4) {
        decode_fp4_blocks_avx2(p, nj, lut16, true, w[r], kBlockSize);
      } else {
        unpack_fp6_avx2(p, nj, codes);
        if (s8) {  // one byte table, then widened
          lut64_bytes_avx2(codes, nj * kBlockSize, lut8, reinterpret_cast<uint8_t*>(bytes));
          widen_i8_blocks_avx2(bytes, nj, w[r], kBlockSize);
        } else {
          lut64_i16_avx2(codes, nj * kBlockSize, t.lut16w, w[r]);
        }
      }
    }
    for (size_t jj = 0; jj < nj; ++jj) {
      const size_t j = j0 + jj;
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * kBlockSize));
      const __m256i a1 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * kBlockSize + 16));
      __m256i s[8];
      for (int r = 0; r < 8; ++r) {
        const int16_t* wr = w[r] + jj * kBlockSize;
        s[r] = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(wr)), a0),
            _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(wr + 16)), a1));
      }
      const __m256i sum = reduce8_epi32(s);
      if (t.fast) {
        // ea + eb in [-126, 103], |s| < 2^24: float(s) * 2^(ea+eb) is exact, so it is r_j.
        const __m256i sb =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.wsc + j * 8)));
        const __m256 fac = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_add_epi32(sb, _mm256_set1_epi32(t.aexp[j] + t.wexp_off)), 23));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sum), fac));
      } else {
        double_step(acc, _mm256_cvtepi32_pd(_mm256_castsi256_si128(sum)),
                    _mm256_cvtepi32_pd(_mm256_extracti128_si256(sum, 1)), t, j);
      }
    }
  }
  _mm256_storeu_ps(t.out, acc);
}

// 16 FP8 codes -> FP16 bit patterns (E4M3: the value times 2^-8, NaN codes mapped to NaN; E5M2:
// the value itself).
template <bool kE4M3>
inline __m256i fp8_to_fp16(const uint8_t* p) {
  const __m256i c = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  if (!kE4M3) return _mm256_slli_epi16(c, 8);
  const __m256i h = _mm256_and_si256(_mm256_slli_epi16(c, 7), _mm256_set1_epi16(short(0xBF80)));
  const __m256i nan =
      _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7FFF)), _mm256_set1_epi16(0x3F80));
  return _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7E00), nan);
}

template <bool kE4M3>
void gemv_f64(const MxGemvArgs& t) {
  const double* a = static_cast<const double*>(t.a);
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, t.nb);
  for (size_t j = 0; j < t.nb; ++j) {
    prefetch(j);
    const double* aj = a + j * kBlockSize;
    __m256d s[8];
    for (int r = 0; r < 8; ++r) {
      __m256d x = _mm256_set1_pd(-0.0);
      for (int h = 0; h < 2; ++h) {
        const __m256i f16 = fp8_to_fp16<kE4M3>(t.rows[r] + j * kBlockSize + h * 16);
        const __m256 f0 = _mm256_cvtph_ps(_mm256_castsi256_si128(f16));
        const __m256 f1 = _mm256_cvtph_ps(_mm256_extracti128_si256(f16, 1));
        const double* ah = aj + h * 16;
        x = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f0)), _mm256_loadu_pd(ah), x);
        x = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)), _mm256_loadu_pd(ah + 4),
                            x);
        x = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f1)), _mm256_loadu_pd(ah + 8),
                            x);
        x = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1)), _mm256_loadu_pd(ah + 12),
                            x);
      }
      s[r] = x;
    }
    double_step(acc, reduce4_pd(s[0], s[1], s[2], s[3]), reduce4_pd(s[4], s[5], s[6], s[7]), t, j);
  }
  _mm256_storeu_ps(t.out, acc);
}

}  // namespace

void transpose_scales8_avx2(const uint8_t* const* sc, size_t nb, uint8_t* wsc, int* smin,
                            int* smax) {
  __m128i vmin = _mm_set1_epi8(char(0xFF)), vmax = _mm_setzero_si128();
  size_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    __m128i q[8];
    for (int r = 0; r < 8; ++r) q[r] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc[r] + j));
    const __m128i t0 = _mm_unpacklo_epi8(q[0], q[1]), t1 = _mm_unpacklo_epi8(q[2], q[3]);
    const __m128i t2 = _mm_unpacklo_epi8(q[4], q[5]), t3 = _mm_unpacklo_epi8(q[6], q[7]);
    const __m128i u0 = _mm_unpacklo_epi16(t0, t1), u1 = _mm_unpackhi_epi16(t0, t1);
    const __m128i u2 = _mm_unpacklo_epi16(t2, t3), u3 = _mm_unpackhi_epi16(t2, t3);
    const __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2),
                          _mm_unpacklo_epi32(u1, u3), _mm_unpackhi_epi32(u1, u3)};
    for (int i = 0; i < 4; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(wsc + j * 8 + i * 16), v[i]);
      vmin = _mm_min_epu8(vmin, v[i]);
      vmax = _mm_max_epu8(vmax, v[i]);
    }
  }
  alignas(16) uint8_t lo[16], hi[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(lo), vmin);
  _mm_store_si128(reinterpret_cast<__m128i*>(hi), vmax);
  int mn = 255, mx = 0;
  for (int i = 0; i < 16; ++i) mn = std::min<int>(mn, lo[i]), mx = std::max<int>(mx, hi[i]);
  for (; j < nb; ++j)
    for (int r = 0; r < 8; ++r) {
      wsc[j * 8 + r] = sc[r][j];
      mn = std::min<int>(mn, sc[r][j]);
      mx = std::max<int>(mx, sc[r][j]);
    }
  *smin = mn;
  *smax = mx;
}

void mx_gemv_rows8_avx2(const MxGemvArgs& t) {
  switch (t.route) {
    case GemvRoute::I8:  // not AVX2 routes (the driver asks for I16 / F64 here)
    case GemvRoute::I16S:
    case GemvRoute::I16:
      return gemv_i16(t);
    case GemvRoute::F64:
      if (t.wf == MxFormat::E4M3) return gemv_f64<true>(t);
      return gemv_f64<false>(t);
  }
}

}  // namespace dmx::kernels::detail

#pragma GCC pop_options
