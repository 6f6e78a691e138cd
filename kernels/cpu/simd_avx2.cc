// AVX2 + FMA kernels: the FP64 and mixed GEMM tiles, block decoders, row dequantization, and the
// decode / layout helpers of the integer GEMM's weight packing (unpack, LUTs, transposes).
// Compiled for the whole file with a target pragma (not -mavx2), so no inline function from a
// shared header is emitted here with AVX2 code; callers check path_available().
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

}  // namespace dmx::kernels::detail
#pragma GCC pop_options
