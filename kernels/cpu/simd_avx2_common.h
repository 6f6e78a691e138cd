// AVX2 helpers shared by the simd_avx2*.cc and simd_avx512.cc kernels. Include only after a
// `#pragma GCC target` that enables AVX2 and FMA (each kernel file sets it): these inline functions
// are then compiled for AVX2 in that file alone, never emitted into a file built for the baseline
// ISA.
#pragma once

#include <immintrin.h>

// Internal linkage on purpose: files built for different targets must never share one
// out-of-line copy (the linker could hand an AVX-512-compiled copy to an AVX2-only path).
namespace dmx::kernels::detail::avx2 {
namespace {

// Sums of 8 vectors of 8 int32 -> one vector, lane r = sum of v[r].
inline __m256i reduce8_epi32(const __m256i* v) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                          _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

// Four vectors of 4 doubles -> lane r = sum of v[r].
inline __m256d reduce4_pd(__m256d v0, __m256d v1, __m256d v2, __m256d v3) {
  const __m256d h01 = _mm256_hadd_pd(v0, v1), h23 = _mm256_hadd_pd(v2, v3);
  return _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20),
                       _mm256_permute2f128_pd(h01, h23, 0x31));
}

// r_j for 8 rows from exact sums: (sum * wfac) * afac is exact in double, one rounding to FP32.
inline __m256 block_results(__m256d lo, __m256d hi, const double* wfac, double afac) {
  const __m256d fa = _mm256_set1_pd(afac);
  lo = _mm256_mul_pd(_mm256_mul_pd(lo, _mm256_loadu_pd(wfac)), fa);
  hi = _mm256_mul_pd(_mm256_mul_pd(hi, _mm256_loadu_pd(wfac + 4)), fa);
  return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

}  // namespace
}  // namespace dmx::kernels::detail::avx2
