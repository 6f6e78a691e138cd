// AVX2 + FMA kernels. Compiled for the whole file with a target pragma (not -mavx2), so no inline
// function from a shared header is emitted here with AVX2 code; callers check path_available().
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace dmx::kernels::detail {
namespace {

// Sums of 8 vectors of 8 int32 -> one vector, lane r = sum of v[r].
inline __m256i reduce8_epi32(const __m256i v[8]) {
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

void double_tile_avx2(const TileArgs& t) {
  const double* Ad = static_cast<const double*>(t.Adec);
  const double* Wt = static_cast<const double*>(t.Wt);
  for (size_t m = 0; m < t.M; ++m) {
    __m256 acc = _mm256_loadu_ps(t.acc + m * 8);
    const double* arow = Ad + m * t.lda;
    for (size_t j = t.j0; j < t.j1; ++j) {
      const double* a = arow + j * 32;
      const double* w = Wt + (j - t.j0) * 8 * 32;
      // -0 start: a sum is -0 exactly when every product is -0, as IEEE addition gives.
      __m256d v[8];
      for (int r = 0; r < 8; ++r) v[r] = _mm256_set1_pd(-0.0);
      for (int i = 0; i < 8; ++i) {
        const __m256d av = _mm256_loadu_pd(a + 4 * i);
        for (int r = 0; r < 8; ++r)
          v[r] = _mm256_fmadd_pd(_mm256_loadu_pd(w + r * 32 + 4 * i), av, v[r]);
      }
      const __m256 res =
          block_results(reduce4_pd(v[0], v[1], v[2], v[3]), reduce4_pd(v[4], v[5], v[6], v[7]),
                        t.wfac + (j - t.j0) * 8, t.afac[m * t.nb + j]);
      acc = _mm256_add_ps(acc, res);
    }
    _mm256_storeu_ps(t.acc + m * 8, acc);
  }
}

void mixed_tile_avx2(size_t M, const float* A, size_t lda, size_t k0, size_t kc, const float* Wf,
                     size_t ldw, float* lanes) {
  for (size_t m = 0; m < M; ++m) {
    float* ln = lanes + m * 64;
    __m256 acc[8];
    for (int r = 0; r < 8; ++r) acc[r] = _mm256_loadu_ps(ln + r * 8);
    const float* a = A + m * lda + k0;
    for (size_t k = 0; k < kc; k += 8) {
      const __m256 av = _mm256_loadu_ps(a + k);
      for (int r = 0; r < 8; ++r)
        acc[r] = _mm256_fmadd_ps(av, _mm256_loadu_ps(Wf + r * ldw + k), acc[r]);
    }
    for (int r = 0; r < 8; ++r) _mm256_storeu_ps(ln + r * 8, acc[r]);
  }
}

bool decode_block_int16_avx2(MxFormat f, const uint8_t* codes, int16_t* out) {
  const int bits = format_bits(f);
  if (bits == 6) return false;
  __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  if (bits == 4) {  // 16-entry signed table, one pshufb (values fit int8 when Int16 is chosen)
    alignas(16) int8_t lut[16];
    for (int i = 0; i < 16; ++i) lut[i] = int8_t(table(f).q16[i]);
    c = _mm256_shuffle_epi8(
        _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(lut))), c);
  } else if (!format_info(f).is_int) {
    return false;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16),
                      _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c, 1)));
  return true;
}

bool decode_block_double_avx2(MxFormat f, const uint8_t* codes, double* out) {
  if (format_bits(f) == 6) return false;
  const double* tb = table(f).unit_d;
  for (int q = 0; q < 8; ++q) {
    int32_t w;
    std::memcpy(&w, codes + 4 * q, 4);
    const __m128i idx = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
    _mm256_storeu_pd(out + 4 * q, _mm256_i32gather_pd(tb, idx, 8));
  }
  return true;
}

void dequantize_row_avx2(MxFormat f, const uint8_t* codes, const uint8_t* scales, size_t cols,
                         float* out) {
  const FormatTable& tb = table(f);
  const int bits = format_bits(f);
  for (size_t j = 0; j < cols / 32; ++j) {
    const __m256 sc = _mm256_set1_ps(decode_scale(scales[j]));
    float* o = out + j * 32;
    if (bits == 4) {
      // Sign-magnitude nibbles: |value| from an 8-entry permute, the sign bit moved to bit 31.
      const __m256 mag_table = _mm256_loadu_ps(tb.unit);
      const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
      for (int q = 0; q < 4; ++q) {
        uint32_t word;
        std::memcpy(&word, codes + j * 16 + q * 4, 4);
        const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts),
                                           _mm256_set1_epi32(15));
        const __m256 mag = _mm256_permutevar8x32_ps(mag_table, c);
        const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(c, 3), 31));
        _mm256_storeu_ps(o + q * 8, _mm256_mul_ps(_mm256_or_ps(mag, sign), sc));
      }
    } else {  // 8-bit codes: gather from the 256-entry table
      for (int q = 0; q < 4; ++q) {
        const __m256i c = _mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + j * 32 + q * 8)));
        _mm256_storeu_ps(o + q * 8, _mm256_mul_ps(_mm256_i32gather_ps(tb.unit, c, 4), sc));
      }
    }
  }
}

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

void transpose_dwords8_avx2(const int32_t* in, size_t in_stride, size_t ndw, int32_t* out) {
  for (size_t d = 0; d < ndw; d += 8) {
    __m256i r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i * in_stride + d));
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    __m256i* o = reinterpret_cast<__m256i*>(out + d * 8);
    _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(u0, u4, 0x20));
    _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u1, u5, 0x20));
    _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u2, u6, 0x20));
    _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u3, u7, 0x20));
    _mm256_storeu_si256(o + 4, _mm256_permute2x128_si256(u0, u4, 0x31));
    _mm256_storeu_si256(o + 5, _mm256_permute2x128_si256(u1, u5, 0x31));
    _mm256_storeu_si256(o + 6, _mm256_permute2x128_si256(u2, u6, 0x31));
    _mm256_storeu_si256(o + 7, _mm256_permute2x128_si256(u3, u7, 0x31));
  }
}

void int8_corrections_avx2(const int8_t* wp, size_t ngroups, int G, int ra, int16_t* corr) {
  const __m256i ones8 = _mm256_set1_epi8(1), mra = _mm256_set1_epi16(int16_t(-ra));
  for (size_t g0 = 0; g0 < ngroups; g0 += G) {
    __m256i sum = _mm256_setzero_si256();
    for (int g = 0; g < G; ++g)
      sum = _mm256_add_epi16(
          sum,
          _mm256_maddubs_epi16(
              ones8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + (g0 + g) * 32))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + (g0 / G) * 16),
                        _mm256_mullo_epi16(sum, mra));
  }
}

void unpack_fp6_avx2(const uint8_t* packed, size_t nblocks, uint8_t* out) {
  // Lane 0: bytes 0-11 (loaded from p), lane 1: bytes 12-23 (loaded from p + 8, no over-read);
  // dword i of a lane <- its 3-byte group i.
  const __m256i sh = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 4, 5, 6,
                                      -1, 7, 8, 9, -1, 10, 11, 12, -1, 13, 14, 15, -1);
  const __m256i m0 = _mm256_set1_epi32(0x3F), m1 = _mm256_set1_epi32(0x3F00);
  const __m256i m2 = _mm256_set1_epi32(0x3F0000), m3 = _mm256_set1_epi32(0x3F000000);
  for (size_t j = 0; j < nblocks; ++j) {
    const uint8_t* p = packed + j * 24;
    const __m256i x = _mm256_shuffle_epi8(
        _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)), 1),
        sh);
    // 24 bits w -> bytes (w & 63, w >> 6 & 63, w >> 12 & 63, w >> 18 & 63).
    const __m256i c = _mm256_or_si256(
        _mm256_or_si256(_mm256_and_si256(x, m0), _mm256_and_si256(_mm256_slli_epi32(x, 2), m1)),
        _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi32(x, 4), m2),
                        _mm256_and_si256(_mm256_slli_epi32(x, 6), m3)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j * 32), c);
  }
}

void decode_fp6_s8_avx2(const uint8_t* codes, size_t n, const int8_t* mag32, int8_t* out) {
  const __m256i lo =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mag32)));
  const __m256i hi =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mag32 + 16)));
  const __m256i m31 = _mm256_set1_epi8(31), b32 = _mm256_set1_epi8(32), b15 = _mm256_set1_epi8(15);
  for (size_t i = 0; i < n; i += 32) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    const __m256i mag = _mm256_and_si256(c, m31);
    const __m256i v = _mm256_blendv_epi8(_mm256_shuffle_epi8(lo, mag), _mm256_shuffle_epi8(hi, mag),
                                         _mm256_cmpgt_epi8(mag, b15));
    const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(c, b32), b32);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_sub_epi8(_mm256_xor_si256(v, neg), neg));
  }
}

void lut64_bytes_avx2(const uint8_t* codes, size_t n, const uint8_t* lut64, uint8_t* out) {
  __m256i t[4];
  for (int i = 0; i < 4; ++i)
    t[i] = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut64 + 16 * i)));
  for (size_t i = 0; i < n; i += 32) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    // Code bit 4 (and bit 5) moved to each byte's sign bit for the blends (bits shifted in from
    // the byte below land under bit 7 and are ignored); vpshufb uses bits 0-3 (bit 7 is clear).
    const __m256i b4 = _mm256_slli_epi16(c, 3), b5 = _mm256_slli_epi16(c, 2);
    const __m256i lo =
        _mm256_blendv_epi8(_mm256_shuffle_epi8(t[0], c), _mm256_shuffle_epi8(t[1], c), b4);
    const __m256i hi =
        _mm256_blendv_epi8(_mm256_shuffle_epi8(t[2], c), _mm256_shuffle_epi8(t[3], c), b4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_blendv_epi8(lo, hi, b5));
  }
}

void lut64_i16_avx2(const uint8_t* codes, size_t n, const int16_t* lut64, int16_t* out) {
  alignas(16) uint8_t lo[64], hi[64];
  for (int c = 0; c < 64; ++c) {
    lo[c] = uint8_t(uint16_t(lut64[c]) & 0xFF);
    hi[c] = uint8_t(uint16_t(lut64[c]) >> 8);
  }
  __m256i tl[4], th[4];
  for (int i = 0; i < 4; ++i) {
    tl[i] =
        _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(lo + 16 * i)));
    th[i] =
        _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(hi + 16 * i)));
  }
  for (size_t i = 0; i < n; i += 32) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
    const __m256i b4 = _mm256_slli_epi16(c, 3), b5 = _mm256_slli_epi16(c, 2);  // as lut64_bytes
    const auto look = [&](const __m256i* t) {
      const __m256i a =
          _mm256_blendv_epi8(_mm256_shuffle_epi8(t[0], c), _mm256_shuffle_epi8(t[1], c), b4);
      const __m256i b =
          _mm256_blendv_epi8(_mm256_shuffle_epi8(t[2], c), _mm256_shuffle_epi8(t[3], c), b4);
      return _mm256_blendv_epi8(a, b, b5);
    };
    const __m256i l = look(tl), h = look(th);
    // Per 128-bit lane: unpacklo -> elements 0-7 | 16-23, unpackhi -> 8-15 | 24-31.
    const __m256i u0 = _mm256_unpacklo_epi8(l, h), u1 = _mm256_unpackhi_epi8(l, h);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16),
                        _mm256_permute2x128_si256(u0, u1, 0x31));
  }
}

void decode_fp4_blocks_avx2(const uint8_t* packed, size_t nblocks, const int8_t* lut16, bool to_i16,
                            void* out, size_t out_stride) {
  const __m128i lut = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut16));
  const __m128i lo_mask = _mm_set1_epi8(0x0F);
  for (size_t j = 0; j < nblocks; ++j) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + j * 16));
    const __m128i lo = _mm_and_si128(x, lo_mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), lo_mask);
    // Even elements in the low nibbles: interleave back into element order.
    const __m128i c0 = _mm_shuffle_epi8(lut, _mm_unpacklo_epi8(lo, hi));
    const __m128i c1 = _mm_shuffle_epi8(lut, _mm_unpackhi_epi8(lo, hi));
    if (to_i16) {
      int16_t* o = static_cast<int16_t*>(out) + j * out_stride;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm256_cvtepi8_epi16(c0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 16), _mm256_cvtepi8_epi16(c1));
    } else {
      uint8_t* o = static_cast<uint8_t*>(out) + j * out_stride;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), c0);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), c1);
    }
  }
}

void widen_i8_blocks_avx2(const int8_t* in, size_t nblocks, int16_t* out, size_t out_stride) {
  for (size_t j = 0; j < nblocks; ++j) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + j * 32));
    int16_t* o = out + j * out_stride;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o),
                        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(c)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 16),
                        _mm256_cvtepi8_epi16(_mm256_extracti128_si256(c, 1)));
  }
}

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
