// AVX2 mixed GEMV (M = 1, FP32 activations): 8 weight rows decoded in registers per block, the
// mixed contract's 8 FP32 lanes per output (callers check path_available()).
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

// ---- Mixed GEMV (M = 1), weights decoded in registers ----------------------------------------
namespace {
// 2^(code - 127) as FP32 (the MX core's E8M0 decode, inline).
inline float scale_f32(uint8_t code) { return fp32_from_bits(core::scale_fp32_bits(code)); }

// The 8 rows' scale factors of blocks [j0, j0 + n) (n <= kScaleRun) as FP32, scale_f32 of each
// code, into scf[r * kScaleRun + j - j0]: eight codes a vector, the tail one by one.
constexpr size_t kScaleRun = 64;
inline void scales_f32_rows8(const uint8_t* const* scales, size_t j0, size_t n, float* scf) {
  const __m256i zero = _mm256_setzero_si256(), nan_code = _mm256_set1_epi32(kScaleNaN);
  const __m256i sub = _mm256_set1_epi32(0x00400000), qnan = _mm256_set1_epi32(0x7fc00000);
  for (int r = 0; r < 8; ++r) {
    const uint8_t* sr = scales[r] + j0;
    float* o = scf + r * kScaleRun;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256i c =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sr + i)));
      __m256i b = _mm256_slli_epi32(c, 23);
      b = _mm256_blendv_epi8(b, sub, _mm256_cmpeq_epi32(c, zero));
      b = _mm256_blendv_epi8(b, qnan, _mm256_cmpeq_epi32(c, nan_code));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i), b);
    }
    for (; i < n; ++i) o[i] = scale_f32(sr[i]);
  }
}

// Eight weights [q*8, q*8+8) of block j of one packed row, dequantized as dequantize_row does.
template <int kBits>
inline __m256 decode8_f32(const uint8_t* row, size_t j, int q, const float* unit, __m256 mag_table,
                          __m256 sc) {
  if constexpr (kBits == 4) {
    uint32_t word;
    std::memcpy(&word, row + j * 16 + q * 4, 4);
    // vpermps reads the low 3 bits (the magnitude); the sign (bit 3) is moved to bit 31.
    const __m256i c = _mm256_srlv_epi32(_mm256_set1_epi32(int(word)),
                                        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    const __m256 mag = _mm256_permutevar8x32_ps(mag_table, c);
    const __m256 sign = _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_slli_epi32(c, 28), _mm256_set1_epi32(int(0x80000000u))));
    return _mm256_mul_ps(_mm256_or_ps(mag, sign), sc);
  } else {
    const __m256i c = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j * 32 + q * 8)));
    return _mm256_mul_ps(_mm256_i32gather_ps(unit, c, 4), sc);
  }
}

// FP4 rows whose element values all have zero low 16 FP32 bits (E2M1): each block of a row is
// decoded with two 16-entry byte tables (the two high bytes of the FP32 value) into element order.
// Per FP4 format, built once: whether every value's FP32 bits live in the two high bytes, and the
// 16-entry tables of those bytes.
struct Fp4ByteLuts {
  bool low_zero = false;
  alignas(16) uint8_t hb[16] = {}, lb[16] = {};
};
const Fp4ByteLuts& fp4_byte_luts(MxFormat f) {
  static const std::vector<Fp4ByteLuts> luts = [] {
    std::vector<Fp4ByteLuts> v(kNumFormats);
    for (MxFormat fmt : kAllFormats) {
      if (format_bits(fmt) != 4) continue;
      Fp4ByteLuts& l = v[int(fmt)];
      l.low_zero = true;
      for (int c = 0; c < 16; ++c) {
        uint32_t b;
        std::memcpy(&b, &table(fmt).unit[c], 4);
        l.low_zero &= (b & 0xFFFF) == 0;
        l.hb[c] = uint8_t(b >> 24);
        l.lb[c] = uint8_t(b >> 16);
      }
    }
    return v;
  }();
  return luts[int(f)];
}

void mixed_gemv_rows8_fp4_bytes(MxFormat f, const float* a, const uint8_t* const* rows,
                                const uint8_t* const* scales, size_t nb, float* lanes,
                                const uint8_t* pf, size_t pf_bytes) {
  const Fp4ByteLuts& luts = fp4_byte_luts(f);
  const __m256i hb_lut =
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(luts.hb)));
  const __m256i lb_lut =
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(luts.lb)));
  // Packed bytes holding elements {0-3, 8-11, 16-19, 24-27} to the low lane, the rest to the
  // high lane: after the nibble interleave and the byte/word unpacks, 8-lane vectors in k order.
  const __m256i perm = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 6,
                                        7, 10, 11, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256i nib = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
  // The lanes stay in memory (L1) between blocks: in registers they were spilled around the
  // decode anyway. Per block and row: one load, four dependent FMAs, one store.
  alignas(32) float acc[8 * 8];
  alignas(32) float scf[8 * kScaleRun];
  std::memcpy(acc, lanes, sizeof acc);
  for (size_t j = 0; j < nb; ++j) {
    if (j % kScaleRun == 0) scales_f32_rows8(scales, j, std::min(kScaleRun, nb - j), scf);
    const float* aj = a + j * 32;
    if (pf && j * 128 < pf_bytes) {  // 8 rows x 16 bytes here: as much of the next rows
      _mm_prefetch(reinterpret_cast<const char*>(pf) + j * 128, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(pf) + j * 128 + 64, _MM_HINT_T0);
    }
    const __m256 a0 = _mm256_loadu_ps(aj), a1 = _mm256_loadu_ps(aj + 8);
    const __m256 a2 = _mm256_loadu_ps(aj + 16), a3 = _mm256_loadu_ps(aj + 24);
    // Per row: the block decoded and dequantized, then the row's lanes take k in order
    // (q = 0..3); the rows' FMA chains are independent and overlap.
    for (int r = 0; r < 8; ++r) {
      const __m256 sc = _mm256_broadcast_ss(&scf[r * kScaleRun + j % kScaleRun]);
      const __m256i x = _mm256_shuffle_epi8(
          _mm256_broadcastsi128_si256(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + j * 16))),
          perm);
      const __m256i c = _mm256_unpacklo_epi8(_mm256_and_si256(x, nib),
                                             _mm256_and_si256(_mm256_srli_epi16(x, 4), nib));
      const __m256i h = _mm256_shuffle_epi8(hb_lut, c), l = _mm256_shuffle_epi8(lb_lut, c);
      const __m256i w01 = _mm256_unpacklo_epi8(l, h), w23 = _mm256_unpackhi_epi8(l, h);
      const __m256 f0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w01));
      const __m256 f1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w01));
      const __m256 f2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w23));
      const __m256 f3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w23));
      __m256 v = _mm256_load_ps(acc + r * 8);
      v = _mm256_fmadd_ps(a0, _mm256_mul_ps(f0, sc), v);
      v = _mm256_fmadd_ps(a1, _mm256_mul_ps(f1, sc), v);
      v = _mm256_fmadd_ps(a2, _mm256_mul_ps(f2, sc), v);
      v = _mm256_fmadd_ps(a3, _mm256_mul_ps(f3, sc), v);
      _mm256_store_ps(acc + r * 8, v);
    }
  }
  std::memcpy(lanes, acc, sizeof acc);
}

template <int kBits>
void mixed_gemv_rows8_impl(MxFormat f, const float* a, const uint8_t* const* rows,
                           const uint8_t* const* scales, size_t nb, float* lanes, const uint8_t* pf,
                           size_t pf_bytes) {
  const float* unit = table(f).unit;
  const __m256 mag_table = _mm256_loadu_ps(unit);
  __m256 acc[8];
  alignas(32) float scf[8 * kScaleRun];
  for (int r = 0; r < 8; ++r) acc[r] = _mm256_loadu_ps(lanes + r * 8);
  for (size_t j = 0; j < nb; ++j) {
    if (j % kScaleRun == 0) scales_f32_rows8(scales, j, std::min(kScaleRun, nb - j), scf);
    if (pf && j * 8 * kBits * 4 < pf_bytes)  // 8 rows x one block here: as much of the next
      for (int l = 0; l < kBits / 2; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(pf) + j * 8 * kBits * 4 + 64 * l, _MM_HINT_T0);
    __m256 sc[8];
    for (int r = 0; r < 8; ++r) sc[r] = _mm256_broadcast_ss(&scf[r * kScaleRun + j % kScaleRun]);
    for (int q = 0; q < 4; ++q) {
      const __m256 av = _mm256_loadu_ps(a + j * 32 + q * 8);
      for (int r = 0; r < 8; ++r)
        acc[r] =
            _mm256_fmadd_ps(av, decode8_f32<kBits>(rows[r], j, q, unit, mag_table, sc[r]), acc[r]);
    }
  }
  for (int r = 0; r < 8; ++r) _mm256_storeu_ps(lanes + r * 8, acc[r]);
}
}  // namespace

bool mixed_gemv_rows8_avx2(MxFormat f, const float* a, const uint8_t* const* rows,
                           const uint8_t* const* scales, size_t nb, float* lanes, const uint8_t* pf,
                           size_t pf_bytes) {
  switch (format_bits(f)) {
    case 4: {
      if (fp4_byte_luts(f).low_zero)  // every value's FP32 bits live in the two high bytes
        mixed_gemv_rows8_fp4_bytes(f, a, rows, scales, nb, lanes, pf, pf_bytes);
      else
        mixed_gemv_rows8_impl<4>(f, a, rows, scales, nb, lanes, pf, pf_bytes);
      return true;
    }
    case 8:
      mixed_gemv_rows8_impl<8>(f, a, rows, scales, nb, lanes, pf, pf_bytes);
      return true;
    default:
      return false;
  }
}

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
