// AVX2 MX x MX integer tiles (M = 1) and the interleaved micro-kernels of the M >= 2 GEMMs:
// int8 (vpmaddubsw) and int16 (vpmaddwd) exact block sums, and the FP64 micro-kernel (callers
// check path_available()).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "simd_avx2_common.h"

namespace dmx::kernels::detail {

using namespace avx2;

// ---- MX x MX integer tiles --------------------------------------------------------------------
namespace {
template <bool kInt8>
void int_tile_impl(const IntTileArgs& t) {
  using E = std::conditional_t<kInt8, int8_t, int16_t>;
  const E* Ad = static_cast<const E*>(t.Adec);
  const E* Wt = static_cast<const E*>(t.Wt);
  const __m256i ones16 = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
  for (size_t m = 0; m < t.M; ++m) {
    __m256 acc = _mm256_loadu_ps(t.acc + m * 8);
    const E* arow = Ad + m * t.lda;
    for (size_t j = t.j0; j < t.j1; ++j) {
      const size_t jj = j - t.j0, mj = m * t.nb + j;
      const E* w = Wt + jj * 8 * 32;
      __m256i v[8];
      if constexpr (kInt8) {
        // Weights as u8 (code value + offset), activations s8: pair sums stay below 2^15.
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(arow + j * 32));
        for (int r = 0; r < 8; ++r)
          v[r] = _mm256_madd_epi16(
              _mm256_maddubs_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * 32)),
                                   a),
              ones16);
      } else {
        const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(arow + j * 32));
        const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(arow + j * 32 + 16));
        for (int r = 0; r < 8; ++r) {
          const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * 32));
          const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * 32 + 16));
          v[r] = _mm256_add_epi32(_mm256_madd_epi16(w0, a0), _mm256_madd_epi16(w1, a1));
        }
      }
      __m256i s = reduce8_epi32(v);
      if (t.acorr) s = _mm256_sub_epi32(s, _mm256_set1_epi32(t.acorr[mj]));
      const int ea = t.aexp[mj];
      __m256 res;
      if (ea + t.wexp_min[jj] >= -149 && ea + t.wexp_max[jj] <= 127) {
        // 2^(ea+eb) is an FP32 value (normal or subnormal), |s| < 2^24 converts exactly: the
        // product is the exact block result rounded once.
        const __m256 fac =
            _mm256_mul_ps(_mm256_set1_ps(t.afac_f[mj]), _mm256_loadu_ps(t.wfac_f + jj * 8));
        res = _mm256_mul_ps(_mm256_cvtepi32_ps(s), fac);
      } else {  // extreme or NaN scales: exact in double, one rounding
        res = block_results(_mm256_cvtepi32_pd(_mm256_castsi256_si128(s)),
                            _mm256_cvtepi32_pd(_mm256_extracti128_si256(s, 1)), t.wfac_d + jj * 8,
                            t.afac_d[mj]);
      }
      // A zero sum's sign needs the codes; acc + (+-0) == acc unless acc is itself zero.
      if (const int z = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(s, zero)))) {
        if (const int zm =
                z & _mm256_movemask_ps(_mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_EQ_OQ))) {
          alignas(32) float tmp[8];
          _mm256_store_ps(tmp, res);
          for (int r = 0; r < 8; ++r)
            if (zm & (1 << r)) tmp[r] = (*t.fix)(m, r, j);
          res = _mm256_load_ps(tmp);
        }
      }
      acc = _mm256_add_ps(acc, res);
    }
    _mm256_storeu_ps(t.acc + m * 8, acc);
  }
}
}  // namespace

void int8_tile_avx2(const IntTileArgs& t) { int_tile_impl<true>(t); }
void int16_tile_avx2(const IntTileArgs& t) { int_tile_impl<false>(t); }

// ---- Interleaved integer GEMM micro-kernels ---------------------------------------------------
namespace {
// Block epilogue for the micro-tile: s[r][t] exact int32 block sums.
// (The fields are copied to locals first: stores to acc must not make the compiler reload them.)
struct MicroLocal {
  const int32_t *aexp23[4], *ga_min, *ga_max, *wexp23[2], *gw_min, *gw_max;
  float* acc;
  size_t acc_stride;
  bool init;
  int r0;  // first row of the current group (4 * gi), for slow()
  explicit MicroLocal(const IntMicroArgs& t)
      : aexp23{t.aexp23[0], t.aexp23[1], t.aexp23[2], t.aexp23[3]},
        ga_min(t.ga_min),
        ga_max(t.ga_max),
        wexp23{t.wexp23[0], t.wexp23[1]},
        gw_min(t.gw_min),
        gw_max(t.gw_max),
        acc(t.acc),
        acc_stride(t.acc_stride),
        init(t.init),
        r0(0) {}
  // On to the next row group.
  void next_group(const IntMicroArgs& t) {
    for (int r = 0; r < 4; ++r) aexp23[r] += 4 * t.e_stride;
    ga_min += t.g_stride;
    ga_max += t.g_stride;
    acc += 4 * acc_stride;
    r0 += 4;
  }
};
inline void micro_epilogue(const IntMicroArgs& t, const MicroLocal& l, size_t j,
                           const __m256i (&s)[4][2]) {
  if (l.init && j == 0)
    for (int r = 0; r < 4; ++r) {
      _mm256_storeu_ps(l.acc + r * l.acc_stride, _mm256_set1_ps(-0.0f));
      _mm256_storeu_ps(l.acc + r * l.acc_stride + 8, _mm256_set1_ps(-0.0f));
    }
  if (l.ga_min[j] + l.gw_min[j] >= -126 && l.ga_max[j] + l.gw_max[j] <= 103) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l.wexp23[0] + j * 8));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(l.wexp23[1] + j * 8));
    for (int r = 0; r < 4; ++r) {
      const __m256i ea = _mm256_set1_epi32(l.aexp23[r][j]);
      float* a = l.acc + r * l.acc_stride;
      _mm256_storeu_ps(
          a, _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][0]),
                             _mm256_castsi256_ps(_mm256_add_epi32(ea, w0)), _mm256_loadu_ps(a)));
      _mm256_storeu_ps(a + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r][1]),
                                              _mm256_castsi256_ps(_mm256_add_epi32(ea, w1)),
                                              _mm256_loadu_ps(a + 8)));
    }
  } else {
    alignas(32) int32_t sv[8];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 2; ++c) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(sv), s[r][c]);
        (*t.slow)(l.r0 + r, c, j, sv, l.acc + r * l.acc_stride + c * 8);
      }
  }
}

// One group of the 4 x 16 micro-tile: h[2r + c] += maddubs(broadcast(a_r[0..3]), w_c) (int8,
// vpaddw) or madd(broadcast(a_r[0..1]), w_c) (int16, vpaddd). Written as one asm statement so
// the accumulators stay in fixed registers (the compiler's allocation added a register copy per
// accumulator per group).
template <bool kInt8>
inline void micro_group_asm(__m256i (&h)[8], const void* w0, const void* w1, const void* a0,
                            const void* a1, const void* a2, const void* a3) {
  // Memory operands (not pointer registers): the compiler folds each group's offsets into the
  // addressing modes (no address arithmetic between groups) and knows exactly what is read.
  using V = __m256i_u;
  using D [[gnu::may_alias]] = int32_t;
  __m256i x0, x1, ab, tm;
  if constexpr (kInt8) {
    __asm__(
        "vmovdqu %[w0], %[x0]\n\t"
        "vmovdqu %[w1], %[x1]\n\t"
        "vpbroadcastd %[a0], %[ab]\n\t"
        "vpmaddubsw %[x0], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h0], %[h0]\n\t"
        "vpmaddubsw %[x1], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h1], %[h1]\n\t"
        "vpbroadcastd %[a1], %[ab]\n\t"
        "vpmaddubsw %[x0], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h2], %[h2]\n\t"
        "vpmaddubsw %[x1], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h3], %[h3]\n\t"
        "vpbroadcastd %[a2], %[ab]\n\t"
        "vpmaddubsw %[x0], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h4], %[h4]\n\t"
        "vpmaddubsw %[x1], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h5], %[h5]\n\t"
        "vpbroadcastd %[a3], %[ab]\n\t"
        "vpmaddubsw %[x0], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h6], %[h6]\n\t"
        "vpmaddubsw %[x1], %[ab], %[tm]\n\t"
        "vpaddw %[tm], %[h7], %[h7]\n\t"
        : [h0] "+x"(h[0]), [h1] "+x"(h[1]), [h2] "+x"(h[2]), [h3] "+x"(h[3]), [h4] "+x"(h[4]),
          [h5] "+x"(h[5]), [h6] "+x"(h[6]), [h7] "+x"(h[7]), [x0] "=&x"(x0), [x1] "=&x"(x1),
          [ab] "=&x"(ab), [tm] "=&x"(tm)
        : [w0] "m"(*static_cast<const V*>(w0)), [w1] "m"(*static_cast<const V*>(w1)),
          [a0] "m"(*static_cast<const D*>(a0)), [a1] "m"(*static_cast<const D*>(a1)),
          [a2] "m"(*static_cast<const D*>(a2)), [a3] "m"(*static_cast<const D*>(a3)));
  } else {
    __asm__(
        "vmovdqu %[w0], %[x0]\n\t"
        "vmovdqu %[w1], %[x1]\n\t"
        "vpbroadcastd %[a0], %[ab]\n\t"
        "vpmaddwd %[x0], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h0], %[h0]\n\t"
        "vpmaddwd %[x1], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h1], %[h1]\n\t"
        "vpbroadcastd %[a1], %[ab]\n\t"
        "vpmaddwd %[x0], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h2], %[h2]\n\t"
        "vpmaddwd %[x1], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h3], %[h3]\n\t"
        "vpbroadcastd %[a2], %[ab]\n\t"
        "vpmaddwd %[x0], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h4], %[h4]\n\t"
        "vpmaddwd %[x1], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h5], %[h5]\n\t"
        "vpbroadcastd %[a3], %[ab]\n\t"
        "vpmaddwd %[x0], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h6], %[h6]\n\t"
        "vpmaddwd %[x1], %[ab], %[tm]\n\t"
        "vpaddd %[tm], %[h7], %[h7]\n\t"
        : [h0] "+x"(h[0]), [h1] "+x"(h[1]), [h2] "+x"(h[2]), [h3] "+x"(h[3]), [h4] "+x"(h[4]),
          [h5] "+x"(h[5]), [h6] "+x"(h[6]), [h7] "+x"(h[7]), [x0] "=&x"(x0), [x1] "=&x"(x1),
          [ab] "=&x"(ab), [tm] "=&x"(tm)
        : [w0] "m"(*static_cast<const V*>(w0)), [w1] "m"(*static_cast<const V*>(w1)),
          [a0] "m"(*static_cast<const D*>(a0)), [a1] "m"(*static_cast<const D*>(a1)),
          [a2] "m"(*static_cast<const D*>(a2)), [a3] "m"(*static_cast<const D*>(a3)));
  }
}

// The same group with intrinsics (compilers without GNU inline asm: -DDMX_KERNELS_NO_ASM).
template <bool kInt8>
inline void micro_group_ref(__m256i (&h)[8], const void* w0, const void* w1, const void* a0,
                            const void* a1, const void* a2, const void* a3) {
  const __m256i x[2] = {_mm256_loadu_si256(static_cast<const __m256i*>(w0)),
                        _mm256_loadu_si256(static_cast<const __m256i*>(w1))};
  const void* a[4] = {a0, a1, a2, a3};
  for (int r = 0; r < 4; ++r) {
    int32_t q;
    std::memcpy(&q, a[r], 4);
    const __m256i ab = _mm256_set1_epi32(q);
    for (int c = 0; c < 2; ++c)
      h[2 * r + c] = kInt8 ? _mm256_add_epi16(h[2 * r + c], _mm256_maddubs_epi16(ab, x[c]))
                           : _mm256_add_epi32(h[2 * r + c], _mm256_madd_epi16(ab, x[c]));
  }
}

template <bool kInt8>
inline void micro_group(__m256i (&h)[8], const void* w0, const void* w1, const void* a0,
                        const void* a1, const void* a2, const void* a3) {
#ifdef DMX_KERNELS_NO_ASM
  micro_group_ref<kInt8>(h, w0, w1, a0, a1, a2, a3);
#else
  micro_group_asm<kInt8>(h, w0, w1, a0, a1, a2, a3);
#endif
}

// The micro-kernels' loop over the batch's row groups and the chunk's blocks: block_sums(a, j, s)
// sets the exact int32 block sums s of block j for the 4 rows a (element type E), then the
// epilogue adds them into the FP32 accumulators.
template <typename E, typename BlockSums>
inline void micro_loop(const IntMicroArgs& t,
                       BlockSums block_sums) {  // by value: captures in registers
  const E* a[4];
  for (int r = 0; r < 4; ++r) a[r] = static_cast<const E*>(t.a[r]);
  MicroLocal l(t);
  for (size_t gi = 0; gi < t.ngroups; ++gi) {
    if (gi > 0) {
      for (int r = 0; r < 4; ++r) a[r] += 4 * t.a_stride;
      l.next_group(t);
    }
    for (size_t j = 0; j < t.nbc; ++j) {
      __m256i s[4][2];
      block_sums(a, j, s);
      micro_epilogue(t, l, j, s);
    }
  }
}

template <int G>
void int8_micro_impl(const IntMicroArgs& t) {
  constexpr int kRuns = 8 / G;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t* w0 = static_cast<const int8_t*>(t.w[0]);
  const int8_t* w1 = static_cast<const int8_t*>(t.w[1]);
  const int16_t* corr0 = t.corr[0];
  const int16_t* corr1 = t.corr[1];
  micro_loop<uint8_t>(
      t, [w0, w1, corr0, corr1, ones](const uint8_t* const(&a)[4], size_t j, __m256i(&s)[4][2]) {
        for (int run = 0; run < kRuns; ++run) {
          const size_t ci = (j * kRuns + run) * 16;
          const __m256i c0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr0 + ci));
          const __m256i c1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr1 + ci));
          __m256i h[8];
          for (int r = 0; r < 4; ++r) {
            h[2 * r] = c0;
            h[2 * r + 1] = c1;
          }
          for (int g = 0; g < G; ++g) {
            const size_t kg = j * 8 + run * G + g;
            micro_group<true>(h, w0 + kg * 32, w1 + kg * 32, a[0] + kg * 4, a[1] + kg * 4,
                              a[2] + kg * 4, a[3] + kg * 4);
          }
          for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 2; ++c) {
              const __m256i m = _mm256_madd_epi16(h[2 * r + c], ones);
              s[r][c] = run == 0 ? m : _mm256_add_epi32(s[r][c], m);
            }
        }
      });
}
}  // namespace

void int8_micro_avx2(const IntMicroArgs& t, int G) {
  switch (G) {
    case 8:
      return int8_micro_impl<8>(t);
    case 4:
      return int8_micro_impl<4>(t);
    case 2:
      return int8_micro_impl<2>(t);
    default:
      return int8_micro_impl<1>(t);
  }
}

void int16_micro_avx2(const IntMicroArgs& t) {
  const int16_t* w0 = static_cast<const int16_t*>(t.w[0]);
  const int16_t* w1 = static_cast<const int16_t*>(t.w[1]);
  micro_loop<int16_t>(t, [w0, w1](const int16_t* const(&a)[4], size_t j, __m256i(&s)[4][2]) {
    __m256i h[8];
    for (int i = 0; i < 8; ++i) h[i] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const size_t kp = j * 16 + p;
      micro_group<false>(h, w0 + kp * 16, w1 + kp * 16, a[0] + kp * 2, a[1] + kp * 2, a[2] + kp * 2,
                         a[3] + kp * 2);
    }
    for (int r = 0; r < 4; ++r) {
      s[r][0] = h[2 * r];
      s[r][1] = h[2 * r + 1];
    }
  });
}

void f64_micro_avx2(const F64MicroArgs& t) {
  const double *a0 = t.a[0], *a1 = t.a[1], *a2 = t.a[2], *a3 = t.a[3];
  const double* w = t.w;
  float* acc = t.acc;
  const size_t as = t.acc_stride;
  for (size_t j = 0; j < t.nbc; ++j) {
    if (t.init && j == 0)
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 12; ++c) acc[r * as + c] = -0.0f;
    if (t.fast && !t.fast[j]) {
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 12; ++c) (*t.slow)(r, c, j, acc + r * as + c);
      continue;
    }
    __m256d v[4][3];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 3; ++c) v[r][c] = _mm256_set1_pd(-0.0);
    const double* wj = w + j * 32 * 12;
    const size_t k0 = j * 32;
#pragma GCC unroll 4
    for (int k = 0; k < 32; ++k) {
      const __m256d w0 = _mm256_loadu_pd(wj + k * 12);
      const __m256d w1 = _mm256_loadu_pd(wj + k * 12 + 4);
      const __m256d w2 = _mm256_loadu_pd(wj + k * 12 + 8);
      __m256d b = _mm256_broadcast_sd(a0 + k0 + k);
      v[0][0] = _mm256_fmadd_pd(b, w0, v[0][0]);
      v[0][1] = _mm256_fmadd_pd(b, w1, v[0][1]);
      v[0][2] = _mm256_fmadd_pd(b, w2, v[0][2]);
      b = _mm256_broadcast_sd(a1 + k0 + k);
      v[1][0] = _mm256_fmadd_pd(b, w0, v[1][0]);
      v[1][1] = _mm256_fmadd_pd(b, w1, v[1][1]);
      v[1][2] = _mm256_fmadd_pd(b, w2, v[1][2]);
      b = _mm256_broadcast_sd(a2 + k0 + k);
      v[2][0] = _mm256_fmadd_pd(b, w0, v[2][0]);
      v[2][1] = _mm256_fmadd_pd(b, w1, v[2][1]);
      v[2][2] = _mm256_fmadd_pd(b, w2, v[2][2]);
      b = _mm256_broadcast_sd(a3 + k0 + k);
      v[3][0] = _mm256_fmadd_pd(b, w0, v[3][0]);
      v[3][1] = _mm256_fmadd_pd(b, w1, v[3][1]);
      v[3][2] = _mm256_fmadd_pd(b, w2, v[3][2]);
    }
    const double* wf = t.wfac + j * 12;
    for (int r = 0; r < 4; ++r) {
      const __m256d fa = _mm256_set1_pd(t.afac[r][j]);
      for (int c = 0; c < 3; ++c) {
        const __m128 res =
            _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_mul_pd(v[r][c], _mm256_loadu_pd(wf + 4 * c)), fa));
        float* o = acc + r * as + 4 * c;
        _mm_storeu_ps(o, _mm_add_ps(_mm_loadu_ps(o), res));
      }
    }
  }
}

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
