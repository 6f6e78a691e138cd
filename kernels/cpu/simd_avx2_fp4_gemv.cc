// AVX2 MX x MX GEMV with FP4 weights: 8 rows of packed E2M1 codes against s8 activations per
// block, exact int32 sums (callers check path_available()).
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

// ---- MX x MX GEMV, FP4 weights ----------------------------------------------------------------
namespace {
// r_j for 8 rows from exact sums s, W scale codes sb, A's exponent ea (kNaNExp: NaN scale); adds
// it to acc (the zero-sum sign from the codes where it matters).
inline __m256 fp4_gemv_block(__m256i s, __m256i sb, int ea, double afac_d, int qw, __m256 acc,
                             size_t j, const std::function<float(size_t, int, size_t)>& fix) {
  const __m256i e = _mm256_add_epi32(sb, _mm256_set1_epi32(ea + qw - kScaleBias));
  const __m256i ok =
      _mm256_andnot_si256(_mm256_cmpeq_epi32(sb, _mm256_set1_epi32(kScaleNaN)),
                          _mm256_and_si256(_mm256_cmpgt_epi32(e, _mm256_set1_epi32(-150)),
                                           _mm256_cmpgt_epi32(_mm256_set1_epi32(128), e)));
  __m256 res;
  if (ea != kNaNExp && _mm256_movemask_ps(_mm256_castsi256_ps(ok)) == 0xFF) {
    // 2^e as FP32 bits: normal, or the subnormal 1 << (e + 149); exact, so one rounding.
    const __m256i fac = _mm256_blendv_epi8(
        _mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_add_epi32(e, _mm256_set1_epi32(149))),
        _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23),
        _mm256_cmpgt_epi32(e, _mm256_set1_epi32(-127)));
    res = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_castsi256_ps(fac));
  } else {  // extreme or NaN scales: exact in double, one rounding
    alignas(32) int32_t sv[8], bv[8];
    alignas(32) float rv[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sv), s);
    _mm256_store_si256(reinterpret_cast<__m256i*>(bv), sb);
    for (int r = 0; r < 8; ++r)
      rv[r] = float(double(sv[r]) * scale_factor_d(uint8_t(bv[r]), qw) * afac_d);
    res = _mm256_load_ps(rv);
  }
  const __m256i zero = _mm256_setzero_si256();
  if (const int z = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(s, zero)))) {
    if (const int zm =
            z & _mm256_movemask_ps(_mm256_cmp_ps(acc, _mm256_setzero_ps(), _CMP_EQ_OQ))) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, res);
      for (int r = 0; r < 8; ++r)
        if (zm & (1 << r)) tmp[r] = fix(0, r, j);
      res = _mm256_load_ps(tmp);
    }
  }
  return _mm256_add_ps(acc, res);
}
}  // namespace

void fp4_gemv_rows8_avx2(const Fp4GemvArgs& t) {
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.lut16)));
  const __m256i nib = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
  const __m256i byte = _mm256_set1_epi32(0xFF);
  const __m256i sc_idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(int(t.sc_stride)));
  __m256 acc = _mm256_loadu_ps(t.acc);
  for (size_t j = 0; j < t.nb; j += 2) {
    const bool two = j + 1 < t.nb;
    if (t.pf && j * 128 < t.pf_bytes) {  // 256 bytes of the 8 rows here: as much of the next
      const char* q = reinterpret_cast<const char*>(t.pf) + j * 128;
      _mm_prefetch(q, _MM_HINT_T0);
      _mm_prefetch(q + 64, _MM_HINT_T0);
      _mm_prefetch(q + 128, _MM_HINT_T0);
      _mm_prefetch(q + 192, _MM_HINT_T0);
    }
    // A permuted per block pair: [even elements of j | of j+1], [odd of j | odd of j+1].
    const __m256i ae = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.a + j * 32));
    const __m256i ao = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.a + j * 32 + 32));
    __m256i v[8];
    for (int r = 0; r < 8; ++r) {
      const uint8_t* p = t.rows[r] + j * 16;
      const __m256i x =
          two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
              : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, nib));
      const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), nib));
      v[r] = _mm256_madd_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(lo, ae), _mm256_maddubs_epi16(hi, ao)), ones16);
    }
    // Lanes 0-3 of v[r] are block j, 4-7 block j+1: two hadd levels keep them apart.
    const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i h0123 = _mm256_hadd_epi32(h01, h23), h4567 = _mm256_hadd_epi32(h45, h67);
    const __m256i g = _mm256_i32gather_epi32(reinterpret_cast<const int*>(t.sc + j), sc_idx, 1);
    if (t.fast) {
      // 2^(ea+eb) bits: (sb + qw + ea) << 23 (ea = sa - 127 + qa), a normal FP32 here.
      const __m256i s0 = _mm256_sub_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                          _mm256_set1_epi32(t.acorr[j]));
      const __m256i f0 = _mm256_slli_epi32(
          _mm256_add_epi32(_mm256_and_si256(g, byte), _mm256_set1_epi32(t.qw + t.aexp[j])), 23);
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_castsi256_ps(f0), acc);
      if (two) {
        const __m256i s1 = _mm256_sub_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x31),
                                            _mm256_set1_epi32(t.acorr[j + 1]));
        const __m256i f1 =
            _mm256_slli_epi32(_mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(g, 8), byte),
                                               _mm256_set1_epi32(t.qw + t.aexp[j + 1])),
                              23);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_castsi256_ps(f1), acc);
      }
      continue;
    }
    acc = fp4_gemv_block(_mm256_sub_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                                          _mm256_set1_epi32(t.acorr[j])),
                         _mm256_and_si256(g, byte), t.aexp[j], t.afac_d[j], t.qw, acc, j, *t.fix);
    if (two)
      acc = fp4_gemv_block(_mm256_sub_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x31),
                                            _mm256_set1_epi32(t.acorr[j + 1])),
                           _mm256_and_si256(_mm256_srli_epi32(g, 8), byte), t.aexp[j + 1],
                           t.afac_d[j + 1], t.qw, acc, j + 1, *t.fix);
  }
  _mm256_storeu_ps(t.acc, acc);
}

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
