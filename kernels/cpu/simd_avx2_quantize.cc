// AVX2 block quantizer for the default options (FLOOR, SAT, NAN_SCALE): rows of FP32 to packed
// codes and E8M0 scales, bit-identical to golden (callers check path_available()).
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

// ---- Quantize (default options: FLOOR, SAT, NAN_SCALE) ---------------------------------------
// Branchless per block: amax as a broadcast u32 max of the magnitude bits, the scale code
// max(e - emax, 0) from amax's exponent field (e = 0 gives code 0, i.e. s = -127), 2^-s as an
// FP32 bit pattern (exact multiply), element codes per format, and the NaN/Inf blocks (amax bits
// above the largest finite) turned into scale 0xFF with codes 0 by masks.
namespace {

struct QuantBlock {
  __m256i xb[4];  // input bits
  __m256 y[4];    // |x| * 2^-s (INT8: x * 2^-s * 64)
  __m256i bad;    // all ones: NaN/Inf in the block
  uint8_t scale;
};

// Broadcast max of the 8 unsigned lanes.
inline __m256i hmax_epu32(__m256i m) {
  m = _mm256_max_epu32(m, _mm256_permute2x128_si256(m, m, 0x01));
  m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0x4E));
  return _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0xB1));
}

template <bool kInt>
inline void quant_block_prologue(const float* v, int emax, QuantBlock& b) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  __m256i ab[4];
  for (int q = 0; q < 4; ++q) {
    b.xb[q] = _mm256_castps_si256(_mm256_loadu_ps(v + q * 8));
    ab[q] = _mm256_and_si256(b.xb[q], abs_mask);
  }
  // Non-negative floats order as integers; NaN/Inf bit patterns are the largest.
  const __m256i amax =
      hmax_epu32(_mm256_max_epu32(_mm256_max_epu32(ab[0], ab[1]), _mm256_max_epu32(ab[2], ab[3])));
  b.bad = _mm256_cmpgt_epi32(amax, _mm256_set1_epi32(0x7f7fffff));
  const __m256i code =
      _mm256_max_epi32(_mm256_sub_epi32(_mm256_srli_epi32(amax, 23), _mm256_set1_epi32(emax)),
                       _mm256_setzero_si256());
  b.scale = uint8_t(_mm256_cvtsi256_si32(_mm256_or_si256(code, b.bad)));
  // 2^-s = 2^(127 - code): bits (254 - code) << 23; code 254 (INT8 only) is the subnormal 2^-127.
  __m256i pb = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(254), code), 23);
  if (emax == 0)
    pb = _mm256_blendv_epi8(pb, _mm256_set1_epi32(0x00400000),
                            _mm256_cmpeq_epi32(code, _mm256_set1_epi32(254)));
  const __m256 p = _mm256_castsi256_ps(pb);
  for (int q = 0; q < 4; ++q) {
    if constexpr (kInt)
      b.y[q] = _mm256_mul_ps(_mm256_mul_ps(_mm256_castsi256_ps(b.xb[q]), p), _mm256_set1_ps(64.0f));
    else
      b.y[q] = _mm256_mul_ps(_mm256_castsi256_ps(ab[q]), p);
  }
}

// Four vectors of 8 int32 codes (< 256) -> 32 bytes in element order.
inline __m256i pack_codes_u8(const __m256i c[4]) {
  const __m256i p01 = _mm256_packus_epi32(c[0], c[1]), p23 = _mm256_packus_epi32(c[2], c[3]);
  return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// FP4 / FP6 formats with at most 8 binades (E2M1, E2M3, E3M2): one FP32 addition rounds |y| to
// the grid and yields the code. For the binade with FP32 biased exponent E (E clamped below at the
// smallest normal binade, which also holds the subnormals: same step), ulp = 2^(E-127-m), and
// M_E = 1.5 * 2^23 * ulp + off_E * ulp with off_E = (E - 128 + bias) << m (the code of the binade
// start minus 2^m; 0 for the lowest binade). |y| + M_E stays in M_E's binade, so the sum is RNE of
// |y| on the ulp grid and its low byte is off_E + round(|y| / ulp) = the magnitude code (one past
// the largest code where |y| rounds up to the next binade: saturated with a byte min). off_E is
// even, so the FP32 tie to even is the element grid's tie to the even code. M_E comes from an
// 8-entry table indexed by E mod 8.
struct GridTable {
  alignas(32) float m[8];
  int e_lo;          // FP32 biased exponent of the smallest normal binade
  uint8_t max_code;  // largest magnitude code
};
GridTable grid_table(MxFormat f) {
  const FormatInfo& fi = format_info(f);
  GridTable g{};
  g.e_lo = 127 + 1 - fi.bias;
  g.max_code = uint8_t((1u << (fi.bits - 1)) - 1);
  for (int e = g.e_lo; e <= 127 + fi.emax; ++e) {
    const uint32_t bits =
        (uint32_t(e - fi.mbits + 23) << 23 | 0x400000u) + uint32_t((e - 128 + fi.bias) << fi.mbits);
    std::memcpy(&g.m[e & 7], &bits, 4);
  }
  return g;
}
bool grid_magic_applies(const FormatInfo& fi) {
  return !fi.is_int && fi.bits < 8 && fi.emax + fi.bias <= 7;  // binades 1 - bias .. emax
}

// 32 codes as bytes (low lane elements 0-3, 8-11, 16-19, 24-27; high lane 4-7, 12-15, 20-23,
// 28-31) -> 16 packed FP4 bytes, even element in the low nibble.
inline __m128i pack_nibbles(__m256i b) {
  const __m256i pairs =
      _mm256_and_si256(_mm256_or_si256(b, _mm256_srli_epi16(b, 4)), _mm256_set1_epi16(0x00FF));
  const __m256i w = _mm256_packus_epi16(pairs, pairs);  // per lane: 8 bytes (two-element pairs)
  // Pairs (0,1),(2,3) in the low lane, (4,5),(6,7) in the high lane, ...: 16-bit interleave.
  return _mm_unpacklo_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

// FP6: 32 codes as bytes in element order -> 24 bytes (four codes in three bytes, little-endian).
inline void store_fp6(__m256i cb, uint8_t* o) {
  const __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(cb, _mm256_set1_epi16(1 | (64 << 8))),
                                      _mm256_set1_epi32(1 | (4096 << 16)));  // 24 bits a dword
  const __m256i sh = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1,
                                      2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  const __m256i t = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(w, sh),
                                                _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(t));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 16), _mm256_extracti128_si256(t, 1));
}

template <int kBits>
void quantize_grid_row(MxFormat f, const float* x, size_t cols, uint8_t* codes, uint8_t* scales) {
  const FormatInfo& fi = format_info(f);
  const GridTable g = grid_table(f);
  const __m256 mtab = _mm256_load_ps(g.m);
  // At most 4 binades (E2M1, E2M3): E mod 4 indexes an in-lane table (vpermilps, cheaper than
  // the lane-crossing vpermps).
  const bool in_lane = 127 + fi.emax - g.e_lo < 4;
  alignas(32) float m4[8];
  for (int i = 0; i < 8; ++i) m4[i] = g.m[(g.e_lo + ((i - g.e_lo) % 4 + 4) % 4) & 7];
  const __m256 mtab4 = _mm256_load_ps(m4);
  const __m256i e_lo = _mm256_set1_epi32(g.e_lo);
  const __m256i low_byte = _mm256_set1_epi32(0xFF);
  const __m256i max_code = _mm256_set1_epi8(char(g.max_code));
  const __m256i sign_bit = _mm256_set1_epi8(char(0x80));
  const size_t nb = cols / 32;
  // FP4: non-temporal stores where the codes are 16-byte aligned (the output is not read back
  // soon; streaming skips the read-for-ownership of its lines).
  const bool stream = kBits == 4 && (reinterpret_cast<uintptr_t>(codes) & 15) == 0;
  for (size_t j = 0; j < nb; ++j) {
    const float* v = x + j * 32;
    _mm_prefetch(reinterpret_cast<const char*>(v + 64 * 32), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + 64 * 32 + 16), _MM_HINT_T0);
    QuantBlock b;
    quant_block_prologue<false>(v, fi.emax, b);
    __m256i c[4];
    for (int q = 0; q < 4; ++q) {
      const __m256i e = _mm256_max_epi32(_mm256_srli_epi32(_mm256_castps_si256(b.y[q]), 23), e_lo);
      const __m256 mg = in_lane ? _mm256_permutevar_ps(mtab4, e)      // E mod 4
                                : _mm256_permutevar8x32_ps(mtab, e);  // E mod 8
      c[q] = _mm256_and_si256(_mm256_castps_si256(_mm256_add_ps(b.y[q], mg)), low_byte);
    }
    // Bytes in the packus order (low lane 0-3, 8-11, 16-19, 24-27; high lane the rest), the sign
    // from the signed-saturating packs of the input bits.
    const __m256i mag = _mm256_min_epu8(
        _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]), _mm256_packus_epi32(c[2], c[3])),
        max_code);
    const __m256i sg = _mm256_and_si256(_mm256_packs_epi16(_mm256_packs_epi32(b.xb[0], b.xb[1]),
                                                           _mm256_packs_epi32(b.xb[2], b.xb[3])),
                                        sign_bit);
    const __m256i cb =
        _mm256_andnot_si256(b.bad, _mm256_or_si256(mag, _mm256_srli_epi16(sg, 8 - kBits)));
    scales[j] = b.scale;
    if constexpr (kBits == 4) {
      const __m128i packed = pack_nibbles(cb);
      if (stream)
        _mm_stream_si128(reinterpret_cast<__m128i*>(codes + j * 16), packed);
      else
        _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + j * 16), packed);
    } else {
      store_fp6(_mm256_permutevar8x32_epi32(cb, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)),
                codes + j * 24);
    }
  }
  if (stream) _mm_sfence();
}

// Other formats: INT8 by RNE conversion and clamp; FP8/FP6 by rounding |y| to the grid step of its
// binade (adding and removing 1.5 * 2^23 * step: one RNE rounding), then the code from the bits.
template <bool kInt>
void quantize_rows_generic(MxFormat f, const float* x, size_t cols, uint8_t* codes,
                           uint8_t* scales) {
  const FormatInfo& fi = format_info(f);
  const int bits = fi.bits, m = fi.mbits;
  const int min_normal_biased = 127 + 1 - fi.bias;  // FP32 biased exponent of 2^(1-bias)
  const __m256i v_min_exp = _mm256_set1_epi32(min_normal_biased);
  const __m256i v_exp_off = _mm256_set1_epi32(23 - m);
  const __m256 v_max = _mm256_set1_ps(fi.max_normal);
  const __m256i v_code_off = _mm256_set1_epi32((127 - fi.bias) << m);
  const __m256 v_sub_scale = _mm256_castsi256_ps(_mm256_set1_epi32((127 - fi.quantum_exp) << 23));
  const __m256i v_min_normal_m1 = _mm256_set1_epi32((min_normal_biased << 23) - 1);
  const __m256i v_magic_add = _mm256_set1_epi32(23 - m);
  const __m256i v_mant_half = _mm256_set1_epi32(0x400000);
  const __m256i v_imin8 = _mm256_set1_epi8(char(-int(fi.max_magnitude)));
  for (size_t j = 0; j < cols / 32; ++j) {
    const float* v = x + j * 32;
    _mm_prefetch(reinterpret_cast<const char*>(v + 64 * 32), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + 64 * 32 + 16), _MM_HINT_T0);
    QuantBlock b;
    quant_block_prologue<kInt>(v, fi.emax, b);
    __m256i c[4];
    for (int q = 0; q < 4; ++q) {
      if constexpr (kInt) {
        c[q] = _mm256_cvtps_epi32(b.y[q]);  // RNE; |c| <= 128, clamped after packing
      } else {
        const __m256 y = b.y[q];
        const __m256i ey =
            _mm256_max_epi32(_mm256_srli_epi32(_mm256_castps_si256(y), 23), v_min_exp);
        const __m256 magic = _mm256_castsi256_ps(
            _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(ey, v_magic_add), 23), v_mant_half));
        const __m256 r = _mm256_min_ps(_mm256_sub_ps(_mm256_add_ps(y, magic), magic), v_max);
        const __m256i rb = _mm256_castps_si256(r);
        const __m256i normal_code = _mm256_sub_epi32(_mm256_srlv_epi32(rb, v_exp_off), v_code_off);
        const __m256i sub_code = _mm256_cvttps_epi32(_mm256_mul_ps(r, v_sub_scale));
        const __m256i mag =
            _mm256_blendv_epi8(sub_code, normal_code, _mm256_cmpgt_epi32(rb, v_min_normal_m1));
        const __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(b.xb[q], 31), bits - 1);
        c[q] = _mm256_or_si256(mag, sign);
      }
    }
    __m256i cb;
    if constexpr (kInt) {  // signed saturation gives the 127 clamp, a byte max the -127 one
      cb = _mm256_max_epi8(
          _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3])),
          v_imin8);
      cb = _mm256_andnot_si256(
          b.bad, _mm256_permutevar8x32_epi32(cb, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    } else {
      cb = _mm256_andnot_si256(b.bad, pack_codes_u8(c));
    }
    scales[j] = b.scale;
    if (bits == 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + j * 32), cb);
    } else {
      store_fp6(cb, codes + j * 24);
    }
  }
}

}  // namespace

void quantize_rows_avx2(MxFormat f, const float* x, size_t cols, uint8_t* codes, uint8_t* scales) {
  const FormatInfo& fi = format_info(f);
  if (fi.is_int)
    quantize_rows_generic<true>(f, x, cols, codes, scales);
  else if (grid_magic_applies(fi) && fi.bits == 4)
    quantize_grid_row<4>(f, x, cols, codes, scales);
  else if (grid_magic_applies(fi) && fi.bits == 6)
    quantize_grid_row<6>(f, x, cols, codes, scales);
  else
    quantize_rows_generic<false>(f, x, cols, codes, scales);
}

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
