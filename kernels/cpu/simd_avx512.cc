// AVX-512 kernels (F/BW/VL): the 512-bit FP64 block-sum tile (integer block sums use the AVX2
// int8/int16 tiles on this path too). Same target-pragma scheme as simd_avx2.cc; only called when
// path_available(AVX512).
#include <cstring>

#include "internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")
// GCC 12 warns falsely inside its own 512-bit cast/extract intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "simd_avx2_common.h"  // the AVX2 reductions (this file's target includes AVX2)

namespace dmx::kernels::detail {

using namespace avx2;

void double_tile_avx512(const TileArgs& t) {
  const double* Ad = static_cast<const double*>(t.Adec);
  const double* Wt = static_cast<const double*>(t.Wt);
  for (size_t m = 0; m < t.M; ++m) {
    __m256 acc = _mm256_loadu_ps(t.acc + m * 8);
    const double* arow = Ad + m * t.lda;
    for (size_t j = t.j0; j < t.j1; ++j) {
      const double* a = arow + j * 32;
      const double* w = Wt + (j - t.j0) * 8 * 32;
      __m512d v[8];
      for (int r = 0; r < 8; ++r) v[r] = _mm512_set1_pd(-0.0);
      for (int i = 0; i < 4; ++i) {
        const __m512d av = _mm512_loadu_pd(a + 8 * i);
        for (int r = 0; r < 8; ++r)
          v[r] = _mm512_fmadd_pd(_mm512_loadu_pd(w + r * 32 + 8 * i), av, v[r]);
      }
      __m256d h[8];
      for (int r = 0; r < 8; ++r)
        h[r] = _mm256_add_pd(_mm512_castpd512_pd256(v[r]), _mm512_extractf64x4_pd(v[r], 1));
      const __m256 res =
          block_results(reduce4_pd(h[0], h[1], h[2], h[3]), reduce4_pd(h[4], h[5], h[6], h[7]),
                        t.wfac + (j - t.j0) * 8, t.afac[m * t.nb + j]);
      acc = _mm256_add_ps(acc, res);
    }
    _mm256_storeu_ps(t.acc + m * 8, acc);
  }
}

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
