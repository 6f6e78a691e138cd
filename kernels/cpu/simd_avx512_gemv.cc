// AVX-512 M = 1 MX x MX GEMV kernels over 8 weight rows read straight from the packed codes
// (driven by gemv_mx.cc; routes and block step in internal.h, MxGemvArgs): VBMI byte permutes and
// vpmultishiftqb unpack FP4/FP6 codes, VNNI vpdpbusd / vpdpwssd give exact int32 block sums, FP8
// weights go through FP16 bit patterns to exact FP64 products. Only called when the CPU has
// avx512 f/bw/vl/vnni/vbmi.
#include <algorithm>
#include <cstring>

#include "internal.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512dq")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace dmx::kernels::detail {
namespace {

// Packed FP4 (32 bytes) / FP6 (48 bytes) of a block pair -> 64 codes in element order, each in
// the low bits of its byte (bits above the code are garbage: the 64-entry tables repeat).
inline __m512i unpack_pair(int bits, const uint8_t* p, __mmask64 m) {
  if (bits == 8) return _mm512_maskz_loadu_epi8(m, p);
  const __m512i raw = _mm512_maskz_loadu_epi8(m, p);
  if (bits == 4) {
    // qword q <- bytes 4q..4q+3; byte i of it <- bits [4i, 4i+8).
    const __m512i spread = _mm512_set_epi8(
        31, 30, 29, 28, 31, 30, 29, 28, 27, 26, 25, 24, 27, 26, 25, 24, 23, 22, 21, 20, 23, 22, 21,
        20, 19, 18, 17, 16, 19, 18, 17, 16, 15, 14, 13, 12, 15, 14, 13, 12, 11, 10, 9, 8, 11, 10, 9,
        8, 7, 6, 5, 4, 7, 6, 5, 4, 3, 2, 1, 0, 3, 2, 1, 0);
    const __m512i shifts = _mm512_set1_epi64(0x1C1814100C080400LL);
    return _mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(spread, raw));
  }
  // FP6: qword q <- bytes 6q..6q+5; byte i of it <- bits [6i, 6i+8).
  const __m512i spread = _mm512_set_epi8(
      47, 47, 47, 46, 45, 44, 43, 42, 41, 41, 41, 40, 39, 38, 37, 36, 35, 35, 35, 34, 33, 32, 31,
      30, 29, 29, 29, 28, 27, 26, 25, 24, 23, 23, 23, 22, 21, 20, 19, 18, 17, 17, 17, 16, 15, 14,
      13, 12, 11, 11, 11, 10, 9, 8, 7, 6, 5, 5, 5, 4, 3, 2, 1, 0);
  const __m512i shifts = _mm512_set1_epi64(0x2A241E18120C0600LL);
  return _mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(spread, raw));
}

inline __mmask64 bytes_mask(size_t n) { return n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1; }

// 8 rows x 16 dwords (dwords 0-7: block j, 8-15: block j+1) -> [rows 0-7 of j, rows 0-7 of j+1].
inline __m512i reduce8_pairs(const __m512i* v) {
  __m512i a[4];
  for (int i = 0; i < 4; ++i)
    a[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  // a[i] per 128-bit lane: [r2i x, r2i+1 x, r2i y, r2i+1 y]
  const __m512i b0 = _mm512_add_epi32(_mm512_unpacklo_epi64(a[0], a[1]),
                                      _mm512_unpackhi_epi64(a[0], a[1]));  // lane: rows 0-3
  const __m512i b1 = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2], a[3]),
                                      _mm512_unpackhi_epi64(a[2], a[3]));  // lane: rows 4-7
  // lanes 0, 1 belong to block j, lanes 2, 3 to block j + 1.
  const __m512i c = _mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i d = _mm512_shuffle_i32x4(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
  const __m512i e = _mm512_add_epi32(c, d);  // [r0-3 j, r0-3 j+1, r4-7 j, r4-7 j+1]
  return _mm512_shuffle_i32x4(e, e, _MM_SHUFFLE(3, 1, 2, 0));
}

// 8 rows x 8 doubles -> the 8 row sums.
inline __m512d reduce8_pd(const __m512d* v) {
  __m512d u[4];
  for (int i = 0; i < 4; ++i)
    u[i] = _mm512_add_pd(_mm512_unpacklo_pd(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_pd(v[2 * i], v[2 * i + 1]));
  // u[i] per lane: [r2i, r2i+1]
  __m512d w[2];
  for (int i = 0; i < 2; ++i)
    w[i] = _mm512_add_pd(_mm512_shuffle_f64x2(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f64x2(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // w[0] = [r01 (L0+L1), r01 (L2+L3), r23 (..), r23 (..)]
  return _mm512_add_pd(_mm512_shuffle_f64x2(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f64x2(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// r_j of the 8 rows: float(s * 2^(ea + eb)), NaN where a scale is NaN.
inline __m256 block_step(__m512d s, const MxGemvArgs& t, size_t j) {
  const __m256i sb =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.wsc + j * 8)));
  const int ea = t.aexp[j];
  const __m256i e = _mm256_add_epi32(sb, _mm256_set1_epi32(ea - kScaleBias + t.wexp_off + 1023));
  __m512d fac = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_cvtepi32_epi64(e), 52));
  __mmask8 nan = _mm256_cmpeq_epi32_mask(sb, _mm256_set1_epi32(kScaleNaN));
  if (ea == kNaNExp) nan = 0xFF;
  fac = _mm512_mask_mov_pd(fac, nan, _mm512_set1_pd(__builtin_nan("")));
  return _mm512_cvtpd_ps(_mm512_mul_pd(s, fac));
}

// Prefetches the share of the next tile that belongs to step i of n.
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

inline void finish_block(__m256& acc, __m256 r, const MxGemvArgs& t, size_t j) {
  if (t.unsafe && t.unsafe[j]) {
    alignas(32) float r8[8];
    _mm256_store_ps(r8, r);
    (*t.patch)(j, r8);
    r = _mm256_load_ps(r8);
  }
  acc = _mm256_add_ps(acc, r);
}

// The integer routes' block step for a pair of blocks: sums [rows of j, rows of j + 1].
inline void int_pair_step(__m256& acc, __m512i sum, const MxGemvArgs& t, size_t j, size_t nblk) {
  if (t.fast) {
    // ea + eb in [-126, 103], |s| < 2^24: float(s) * 2^(ea+eb) is exact, so it is r_j.
    const __m512i sb =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.wsc + j * 8)));
    const __m512i ea =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(t.aexp[j] + t.wexp_off)),
                           _mm256_set1_epi32(t.aexp[j + 1] + t.wexp_off), 1);
    const __m512 fac = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(sb, ea), 23));
    const __m512 r = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), fac);
    acc = _mm256_add_ps(acc, _mm512_castps512_ps256(r));
    if (nblk == 2) acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(r, 1));
    return;
  }
  finish_block(acc, block_step(_mm512_cvtepi32_pd(_mm512_castsi512_si256(sum)), t, j), t, j);
  if (nblk == 2)
    finish_block(acc, block_step(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sum, 1)), t, j + 1),
                 t, j + 1);
}

template <int kBits>
void gemv_i8(const MxGemvArgs& t) {
  const int8_t* a = static_cast<const int8_t*>(t.a);
  const size_t rb = size_t(kBits) * kBlockSize / 8;  // packed bytes per block
  const __m512i lut = _mm512_loadu_si512(t.lut);
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, (t.nb + 1) / 2);
  for (size_t j = 0; j < t.nb; j += 2) {
    prefetch(j / 2);
    const size_t nblk = j + 1 < t.nb ? 2 : 1;
    const __mmask64 m = bytes_mask(nblk * rb);
    const __m512i av = _mm512_loadu_si512(a + j * kBlockSize);
    __m512i s[8];
    for (int r = 0; r < 8; ++r) {
      const __m512i c = unpack_pair(kBits, t.rows[r] + j * rb, m);
      const __m512i w = kBits == 8 ? _mm512_xor_si512(c, _mm512_set1_epi8(char(0x80)))
                                   : _mm512_permutexvar_epi8(c, lut);
      s[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, av);
    }
    __m512i sum = reduce8_pairs(s);
    sum = _mm512_sub_epi32(sum,
                           _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(t.acorr[j])),
                                              _mm256_set1_epi32(t.acorr[j + 1]), 1));
    int_pair_step(acc, sum, t, j, nblk);
  }
  _mm256_storeu_ps(t.out, acc);
}

template <int kBits>
void gemv_i16(const MxGemvArgs& t) {
  const int16_t* a = static_cast<const int16_t*>(t.a);
  const size_t rb = size_t(kBits) * kBlockSize / 8;
  const __m512i lut_lo = _mm512_loadu_si512(t.lut), lut_hi = _mm512_loadu_si512(t.lut + 64);
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, (t.nb + 1) / 2);
  for (size_t j = 0; j < t.nb; j += 2) {
    prefetch(j / 2);
    const size_t nblk = j + 1 < t.nb ? 2 : 1;
    const __mmask64 m = bytes_mask(nblk * rb);
    const __m512i a0 = _mm512_loadu_si512(a + j * kBlockSize);
    const __m512i a1 = _mm512_loadu_si512(a + j * kBlockSize + 32);
    __m512i s[8];
    for (int r = 0; r < 8; ++r) {
      const __m512i c = unpack_pair(kBits, t.rows[r] + j * rb, m);
      const __m512i lo = _mm512_permutexvar_epi8(c, lut_lo),
                    hi = _mm512_permutexvar_epi8(c, lut_hi);
      s[r] = _mm512_dpwssd_epi32(
          _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_unpacklo_epi8(lo, hi), a0),
          _mm512_unpackhi_epi8(lo, hi), a1);
    }
    const __m512i sum = reduce8_pairs(s);
    int_pair_step(acc, sum, t, j, nblk);
  }
  _mm256_storeu_ps(t.out, acc);
}

// E4M3 x E4M3 through exact int16 parts (I16S, internal.h).
void gemv_i16s(const MxGemvArgs& t) {
  const int16_t* alo = static_cast<const int16_t*>(t.a);
  const int16_t* ahi = static_cast<const int16_t*>(t.a2);
  __m512i tab[8];
  for (int i = 0; i < 8; ++i) tab[i] = _mm512_loadu_si512(t.lut4 + 64 * i);
  const __m512i m7f = _mm512_set1_epi8(0x7F), zero = _mm512_setzero_si512();
  __mmask64 nan = 0;
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, (t.nb + 1) / 2);
  for (size_t j = 0; j < t.nb; j += 2) {
    prefetch(j / 2);
    const size_t nblk = j + 1 < t.nb ? 2 : 1;
    const __mmask64 m = bytes_mask(nblk * kBlockSize);
    const __m512i al0 = _mm512_loadu_si512(alo + j * kBlockSize);
    const __m512i al1 = _mm512_loadu_si512(alo + j * kBlockSize + 32);
    const __m512i ah0 = _mm512_loadu_si512(ahi + j * kBlockSize);
    const __m512i ah1 = _mm512_loadu_si512(ahi + j * kBlockSize + 32);
    __m512i t0[8], t8[8], t16[8];
    for (int r = 0; r < 8; ++r) {
      const __m512i c = _mm512_maskz_loadu_epi8(m, t.rows[r] + j * kBlockSize);
      nan |= _mm512_cmpeq_epi8_mask(_mm512_and_si512(c, m7f), m7f);
      const __m512i l0 = _mm512_permutex2var_epi8(tab[0], c, tab[1]);
      const __m512i l1 = _mm512_permutex2var_epi8(tab[2], c, tab[3]);
      const __m512i h0 = _mm512_permutex2var_epi8(tab[4], c, tab[5]);
      const __m512i h1 = _mm512_permutex2var_epi8(tab[6], c, tab[7]);
      // Signs from the codes, in the same interleaved order.
      const __mmask32 sl = _mm512_movepi16_mask(_mm512_unpacklo_epi8(c, c));
      const __mmask32 sh = _mm512_movepi16_mask(_mm512_unpackhi_epi8(c, c));
      __m512i wl0 = _mm512_unpacklo_epi8(l0, l1), wl1 = _mm512_unpackhi_epi8(l0, l1);
      __m512i wh0 = _mm512_unpacklo_epi8(h0, h1), wh1 = _mm512_unpackhi_epi8(h0, h1);
      wl0 = _mm512_mask_sub_epi16(wl0, sl, zero, wl0);
      wl1 = _mm512_mask_sub_epi16(wl1, sh, zero, wl1);
      wh0 = _mm512_mask_sub_epi16(wh0, sl, zero, wh0);
      wh1 = _mm512_mask_sub_epi16(wh1, sh, zero, wh1);
      t0[r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(zero, wl0, al0), wl1, al1);
      t16[r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(zero, wh0, ah0), wh1, ah1);
      __m512i x = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(zero, wl0, ah0), wl1, ah1);
      t8[r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(x, wh0, al0), wh1, al1);
    }
    const __m512i s0 = reduce8_pairs(t0), s8 = reduce8_pairs(t8), s16 = reduce8_pairs(t16);
    for (size_t b = 0; b < nblk; ++b) {
      const auto half = [b](__m512i v) {
        return _mm512_cvtepi32_pd(b ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v));
      };
      // |s| < 2^44: every step exact in FP64.
      const __m512d s = _mm512_fmadd_pd(half(s16), _mm512_set1_pd(65536.0),
                                        _mm512_fmadd_pd(half(s8), _mm512_set1_pd(256.0), half(s0)));
      finish_block(acc, block_step(s, t, j + b), t, j + b);
    }
  }
  *t.saw_nan = nan != 0;
  _mm256_storeu_ps(t.out, acc);
}

// 32 FP8 codes -> FP16 bit patterns (E4M3: the value times 2^-8, NaN codes mapped to NaN; E5M2:
// the value itself).
template <bool kE4M3>
inline __m512i fp8_to_fp16(const uint8_t* p) {
  const __m512i c = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  if (!kE4M3) return _mm512_slli_epi16(c, 8);
  const __m512i h = _mm512_and_si512(_mm512_slli_epi16(c, 7), _mm512_set1_epi16(short(0xBF80)));
  const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(h, _mm512_set1_epi16(0x7FFF)),
                                                _mm512_set1_epi16(0x3F80));
  return _mm512_mask_mov_epi16(h, nan, _mm512_set1_epi16(0x7E00));
}

template <bool kE4M3>
void gemv_f64(const MxGemvArgs& t) {
  const double* a = static_cast<const double*>(t.a);
  __m256 acc = _mm256_set1_ps(-0.0f);
  const Prefetcher prefetch(t, t.nb);
  for (size_t j = 0; j < t.nb; ++j) {
    prefetch(j);
    const double* aj = a + j * kBlockSize;
    const __m512d a0 = _mm512_loadu_pd(aj), a1 = _mm512_loadu_pd(aj + 8),
                  a2 = _mm512_loadu_pd(aj + 16), a3 = _mm512_loadu_pd(aj + 24);
    __m512d s[8];
    for (int r = 0; r < 8; ++r) {
      const __m512i h = fp8_to_fp16<kE4M3>(t.rows[r] + j * kBlockSize);
      const __m512 f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
      const __m512 f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
      __m512d x = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(f0)), a0);
      x = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(f0, 1)), a1, x);
      x = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(f1)), a2, x);
      s[r] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(f1, 1)), a3, x);
    }
    finish_block(acc, block_step(reduce8_pd(s), t, j), t, j);
  }
  _mm256_storeu_ps(t.out, acc);
}

// ---- FP32 activations x MX weights (the mixed contract's 8 lanes) -----------------------------
// One zmm = 2 weight rows x 8 lanes (row 2p in lanes 0-7, row 2p + 1 in 8-15), so each lane l of
// each row still takes k = l mod 8 in increasing k with one FMA per element.

// Element values (scale 2^0) of group i (elements 8i..8i+7 of the block) of both rows of a pair:
// `both` holds the pair's packed block codes, row 2p at byte 0, row 2p + 1 at byte 32.
template <int kBits>
inline __m512 pair_group_values(__m512i both, int i, const __m512& tlo, const __m512& thi,
                                MxFormat f) {
  (void)f;
  if constexpr (kBits == 4) {
    // dword d <- packed byte 4i + d / 2 of its row, the odd elements' nibble shifted down.
    const __m512i idx = _mm512_add_epi32(_mm512_set_epi32(32 + 3, 32 + 3, 32 + 2, 32 + 2, 32 + 1,
                                                          32 + 1, 32, 32, 3, 3, 2, 2, 1, 1, 0, 0),
                                         _mm512_set1_epi32(4 * i));
    const __m512i c = _mm512_permutexvar_epi8(idx, both);  // byte 0 of each dword (others junk)
    const __m512i sh = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    return _mm512_permutexvar_ps(_mm512_srlv_epi32(c, sh), tlo);  // low 4 bits index
  } else if constexpr (kBits == 6) {
    // element e = 8i + d at bits [6e, 6e + 6): bytes 6e / 8 and the next, shifted by 6e mod 8.
    const int base = 6 * i;  // bytes of group i start at 6i
    // dword d: bytes (base + (6d) / 8) and +1 in its low 16 bits; shift (6d) mod 8.
    const __m512i lo_b = _mm512_set_epi32(32 + 5, 32 + 4, 32 + 3, 32 + 3, 32 + 2, 32 + 1, 32 + 0,
                                          32 + 0, 5, 4, 3, 3, 2, 1, 0, 0);
    const __m512i b0 = _mm512_add_epi32(lo_b, _mm512_set1_epi32(base));
    // byte k of dword: b0 + k (k = 0, 1).
    const __m512i idx = _mm512_add_epi32(b0, _mm512_slli_epi32(b0, 8));
    const __m512i idx2 = _mm512_add_epi32(idx, _mm512_set1_epi32(0x0100));
    const __m512i c = _mm512_permutexvar_epi8(idx2, both);
    const __m512i sh = _mm512_set_epi32(2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0);
    const __m512i code = _mm512_srlv_epi32(c, sh);  // 6-bit code in bits 0-5 (junk above)
    const __m512 mag = _mm512_permutex2var_ps(tlo, code, thi);  // 5-bit magnitude index
    const __m512i sign =
        _mm512_and_si512(_mm512_slli_epi32(code, 26), _mm512_set1_epi32(INT32_MIN));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), sign));
  } else {
    // 8-bit: bytes 8i..8i+7 of each row -> 16 codes.
    const __m512i idx =
        _mm512_add_epi32(_mm512_set_epi32(39, 38, 37, 36, 35, 34, 33, 32, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(8 * i));
    const __m512i c = _mm512_permutexvar_epi8(idx, both);  // code in byte 0 of each dword
    (void)tlo;
    (void)thi;
    if (f == MxFormat::INT8) {
      const __m512i v = _mm512_srai_epi32(_mm512_slli_epi32(c, 24), 24);
      return _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(1.0f / 64));  // exact
    }
    // FP16 patterns in the low 16 bits of each dword, then exact FP32.
    const __m256i w = _mm512_cvtepi32_epi16(c);  // code in the low byte of each word
    __m256i h;
    if (f == MxFormat::E5M2) {
      h = _mm256_slli_epi16(w, 8);
    } else {
      const __m256i sx = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);  // sign-extend the byte
      h = _mm256_and_si256(_mm256_slli_epi16(sx, 7), _mm256_set1_epi16(short(0xBF80)));
      const __mmask16 nan = _mm256_cmpeq_epi16_mask(_mm256_and_si256(h, _mm256_set1_epi16(0x7FFF)),
                                                    _mm256_set1_epi16(0x3F80));
      h = _mm256_mask_mov_epi16(h, nan, _mm256_set1_epi16(0x7E00));
    }
    const __m512 v = _mm512_cvtph_ps(h);
    return f == MxFormat::E5M2 ? v : _mm512_mul_ps(v, _mm512_set1_ps(256.0f));  // exact
  }
}

template <int kBits>
void mixed_gemv_impl(const MixedGemvArgs& t) {
  const size_t rb = size_t(kBits) * kBlockSize / 8;
  const __m512 tlo = _mm512_loadu_ps(t.table), thi = _mm512_loadu_ps(t.table + 16);
  __m512 acc[4];
  for (int p = 0; p < 4; ++p) acc[p] = _mm512_set1_ps(-0.0f);
  const __mmask64 m = bytes_mask(rb);
  const __m512i pair_idx[4] = {_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                               _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
                               _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4),
                               _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
  MxGemvArgs pfa{};
  pfa.pf = t.pf;
  pfa.pf_bytes = t.pf_bytes;
  const Prefetcher prefetch(pfa, t.nb);
  for (size_t j = 0; j < t.nb; ++j) {
    prefetch(j);
    // The 8 rows' scale factors 2^(s - 127) as FP32 (decode_scale: 2^-127 subnormal, NaN).
    const __m256i s =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.wsc + j * 8)));
    __m256i fb = _mm256_slli_epi32(s, 23);
    fb = _mm256_mask_mov_epi32(fb, _mm256_cmpeq_epi32_mask(s, _mm256_setzero_si256()),
                               _mm256_set1_epi32(0x00400000));
    fb = _mm256_mask_mov_epi32(fb, _mm256_cmpeq_epi32_mask(s, _mm256_set1_epi32(kScaleNaN)),
                               _mm256_set1_epi32(0x7FC00000));
    const __m512i f8 = _mm512_castsi256_si512(fb);
    const float* aj = t.a + j * kBlockSize;
    for (int p = 0; p < 4; ++p) {
      const __m512 sf = _mm512_castsi512_ps(_mm512_permutexvar_epi32(pair_idx[p], f8));
      const __m512i both = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_maskz_loadu_epi8(__mmask32(m), t.rows[2 * p] + j * rb)),
          _mm256_maskz_loadu_epi8(__mmask32(m), t.rows[2 * p + 1] + j * rb), 1);
      for (int i = 0; i < 4; ++i) {
        const __m512 w = _mm512_mul_ps(pair_group_values<kBits>(both, i, tlo, thi, t.f), sf);
        const __m512 a =
            _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(aj + 8 * i))));
        acc[p] = _mm512_fmadd_ps(a, w, acc[p]);
      }
    }
  }
  for (int p = 0; p < 4; ++p) _mm512_storeu_ps(t.lanes + p * 16, acc[p]);
}

}  // namespace

void mixed_gemv_rows8_avx512(const MixedGemvArgs& t) {
  switch (format_bits(t.f)) {
    case 4:
      return mixed_gemv_impl<4>(t);
    case 6:
      return mixed_gemv_impl<6>(t);
    default:
      return mixed_gemv_impl<8>(t);
  }
}

void transpose_scales8_avx512(const uint8_t* const* sc, size_t nb, uint8_t* wsc, int* smin,
                              int* smax) {
  // out byte jj * 8 + r <- in byte r * 8 + jj (8 rows x 8 blocks per step).
  alignas(64) static const uint8_t kIdx[64] = {
      0,  8,  16, 24, 32, 40, 48, 56, 1,  9,  17, 25, 33, 41, 49, 57, 2,  10, 18, 26, 34, 42,
      50, 58, 3,  11, 19, 27, 35, 43, 51, 59, 4,  12, 20, 28, 36, 44, 52, 60, 5,  13, 21, 29,
      37, 45, 53, 61, 6,  14, 22, 30, 38, 46, 54, 62, 7,  15, 23, 31, 39, 47, 55, 63};
  const __m512i idx = _mm512_load_si512(kIdx);
  __m512i vmin = _mm512_set1_epi8(char(0xFF)), vmax = _mm512_setzero_si512();
  size_t j = 0;
  for (; j + 8 <= nb; j += 8) {
    uint64_t q[8];
    for (int r = 0; r < 8; ++r) std::memcpy(&q[r], sc[r] + j, 8);
    const __m512i v = _mm512_loadu_si512(q);
    vmin = _mm512_min_epu8(vmin, v);
    vmax = _mm512_max_epu8(vmax, v);
    _mm512_storeu_si512(wsc + j * 8, _mm512_permutexvar_epi8(idx, v));
  }
  alignas(64) uint8_t lo[64], hi[64];
  _mm512_store_si512(lo, vmin);
  _mm512_store_si512(hi, vmax);
  int mn = 255, mx = 0;
  for (int i = 0; i < 64; ++i) mn = std::min<int>(mn, lo[i]), mx = std::max<int>(mx, hi[i]);
  for (; j < nb; ++j)
    for (int r = 0; r < 8; ++r) {
      wsc[j * 8 + r] = sc[r][j];
      mn = std::min<int>(mn, sc[r][j]);
      mx = std::max<int>(mx, sc[r][j]);
    }
  *smin = mn;
  *smax = mx;
}

void mx_gemv_rows8_avx512(const MxGemvArgs& t) {
  const int bits = format_bits(t.wf);
  switch (t.route) {
    case GemvRoute::I8:  // FP4 weights with s8 A take the packed-nibble GEMV (gemv_mx.cc)
      if (bits == 6) return gemv_i8<6>(t);
      return gemv_i8<8>(t);
    case GemvRoute::I16:
      if (bits == 4) return gemv_i16<4>(t);
      return gemv_i16<6>(t);
    case GemvRoute::F64:
      if (t.wf == MxFormat::E4M3) return gemv_f64<true>(t);
      return gemv_f64<false>(t);
    case GemvRoute::I16S:
      return gemv_i16s(t);
  }
}

}  // namespace dmx::kernels::detail

#pragma GCC pop_options
