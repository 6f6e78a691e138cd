// MX arithmetic shared by the CUDA kernels and their host-side tests (__host__ __device__).
//
// Everything here is a port of golden's algorithms to code that compiles for both the host (g++)
// and the device (nvcc): the element decode, the block quantizer with every policy knob, the
// exact FP32 rounding of a block sum, the canonical packed layout, and the per-block step of
// dot_blocked. The host tests (tests/kernels/cuda/test_cuda_host.cc) check these very functions
// against golden, so the arithmetic the GPU runs is covered on machines without a GPU.
// Format constants are never written here: FormatConsts is filled from dmx::format_info().
#pragma once

#include <dmx/golden.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define DMX_HD __host__ __device__ __forceinline__
#else
#define DMX_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define DMX_UNROLL _Pragma("unroll")
#else
#define DMX_UNROLL
#endif

namespace dmx::cuda::detail {

inline constexpr int kBlock = 32;  // == dmx::kBlockSize (static_assert in the host code)
inline constexpr uint8_t kScaleNaNCode = 0xFF;
inline constexpr int kScaleBiasE8M0 = 127;
inline constexpr uint32_t kQuietNaNBits = 0x7fc00000u;  // std::numeric_limits<float>::quiet_NaN()

// Element flags of a decode table entry.
inline constexpr uint8_t kFlagNeg = 1, kFlagNaN = 2, kFlagInf = 4;

// The format constants a kernel needs, copied from dmx::format_info (host) into kernel arguments.
struct FormatConsts {
  int bits, ebits, mbits, emax, quantum_exp;
  uint32_t max_magnitude;
  bool has_inf, has_nan, is_int;
};

// Quantizer knobs as plain integers (the enums of golden.h, by value).
struct QuantKnobs {
  int scale_rule;  // 0 FLOOR, 1 CEIL, 2 EVEN, 3 RCEIL (dmx::ScaleRule order)
  bool overflow_ovf;
  bool non_finite_element;
  bool int8_allow_minus128;
};

// ---- bit helpers -------------------------------------------------------------------------------
DMX_HD uint32_t f32_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
#endif
}
DMX_HD float f32_from_bits(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, 4);
  return x;
#endif
}
DMX_HD int msb32(uint32_t v) {  // v != 0
#if defined(__CUDA_ARCH__)
  return 31 - __clz(v);
#else
  return 31 - __builtin_clz(v);
#endif
}
DMX_HD int msb64(uint64_t v) {  // v != 0
#if defined(__CUDA_ARCH__)
  return 63 - __clzll(static_cast<long long>(v));
#else
  return 63 - __builtin_clzll(v);
#endif
}

// E8M0 scale -> FP32: 2^(code-127) (code 0 is the FP32 subnormal 2^-127), NaN for 0xFF.
DMX_HD float scale_to_f32(uint8_t code) {
  if (code == kScaleNaNCode) return f32_from_bits(kQuietNaNBits);
  return f32_from_bits(code == 0 ? 0x00400000u : static_cast<uint32_t>(code) << 23);
}

// FP32 -> BF16, round to nearest even, NaN kept quiet (golden's fp32_to_bf16).
DMX_HD uint16_t f32_to_bf16_bits(float x) {
  const uint32_t b = f32_bits(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>((b + rounding) >> 16);
}

// ---- exact rounding to FP32 --------------------------------------------------------------------
// RNE of (neg ? -1 : 1) * m * 2^exp to FP32, subnormals kept, overflow to Inf (golden's
// round_to_fp32 for magnitudes below 2^64).
DMX_HD float round_to_fp32_u64(bool neg, uint64_t m, int exp) {
  const uint32_t sign = neg ? 0x80000000u : 0u;
  if (m == 0) return f32_from_bits(sign);
  const int L = msb64(m) + exp;  // floor(log2 |value|)
  if (L > 127) return f32_from_bits(sign | 0x7f800000u);
  const int qe = L - 23 > -149 ? L - 23 : -149;  // ulp exponent of the target binade
  const int shift = qe - exp;
  uint64_t r;
  if (shift <= 0) {
    r = m << (-shift);  // exact, < 2^24
  } else if (shift > 64) {
    r = 0;  // m < 2^64 <= half an ulp
  } else {
    const uint64_t q = shift == 64 ? 0 : m >> shift;
    const uint64_t rem = shift == 64 ? m : m - (q << shift);
    const uint64_t half = 1ull << (shift - 1);
    r = q;
    if (rem > half || (rem == half && (r & 1))) ++r;
  }
  int e = qe;
  if (r >> 24) {  // rounding carried into the next binade
    r >>= 1;
    ++e;
  }
  if (r == 0) return f32_from_bits(sign);
  if (r < (1u << 23)) return f32_from_bits(sign | static_cast<uint32_t>(r));  // subnormal
  const int biased = e + 23 + 127;
  if (biased >= 255) return f32_from_bits(sign | 0x7f800000u);
  return f32_from_bits(sign | (static_cast<uint32_t>(biased) << 23) |
                       (static_cast<uint32_t>(r) & 0x7fffffu));
}

// Same for a 128-bit magnitude (hi:lo): the top 64 bits plus a sticky bit round exactly as the
// whole value (at least 40 bits are dropped below the sticky position).
DMX_HD float round_to_fp32_u128(bool neg, uint64_t hi, uint64_t lo, int exp) {
  if (hi == 0) return round_to_fp32_u64(neg, lo, exp);
  const int s = msb64(hi) + 1;  // shift right by s keeps 64 bits, the top one set
  const uint64_t window = (hi << (64 - s)) | (s == 64 ? 0 : lo >> s);
  const uint64_t dropped = s == 64 ? lo : lo & ((1ull << s) - 1);
  return round_to_fp32_u64(neg, window | (dropped ? 1ull : 0ull), exp + s);
}

// ---- elements ----------------------------------------------------------------------------------
struct ElemExact {
  uint32_t magnitude;  // value = +-magnitude * 2^quantum_exp
  uint8_t flags;       // kFlagNeg | kFlagNaN | kFlagInf
};

DMX_HD ElemExact decode_exact(const FormatConsts& c, uint8_t code) {
  ElemExact v{0, 0};
  if (c.is_int) {
    const int q = static_cast<int8_t>(code);
    v.flags = q < 0 ? kFlagNeg : 0;
    v.magnitude = static_cast<uint32_t>(q < 0 ? -q : q);
    return v;
  }
  const uint32_t x = code & ((1u << c.bits) - 1u);
  const bool neg = (x >> (c.bits - 1)) & 1u;
  v.flags = neg ? kFlagNeg : 0;
  const uint32_t efield = (x >> c.mbits) & ((1u << c.ebits) - 1u);
  const uint32_t mfield = x & ((1u << c.mbits) - 1u);
  const uint32_t top = (1u << c.ebits) - 1u;
  if (c.has_inf && efield == top) {
    v.flags |= mfield == 0 ? kFlagInf : kFlagNaN;
    return v;
  }
  if (!c.has_inf && c.has_nan && efield == top && mfield == (1u << c.mbits) - 1u) {
    v.flags |= kFlagNaN;
    return v;
  }
  v.magnitude = efield == 0 ? mfield : ((1u << c.mbits) | mfield) << (efield - 1);
  return v;
}

// Element code -> FP32 value times 2^(scale-127): golden's dequantize_block for one element.
DMX_HD float dequantize_element(const FormatConsts& c, uint8_t scale, uint8_t code) {
  if (scale == kScaleNaNCode) return f32_from_bits(kQuietNaNBits);
  const ElemExact e = decode_exact(c, code);
  const bool neg = e.flags & kFlagNeg;
  if (e.flags & kFlagNaN) return f32_from_bits(kQuietNaNBits);
  if (e.flags & kFlagInf) return f32_from_bits(neg ? 0xff800000u : 0x7f800000u);
  return round_to_fp32_u64(neg, e.magnitude,
                           c.quantum_exp + static_cast<int>(scale) - kScaleBiasE8M0);
}

// The same value the way the kernels compute it: the element's FP32 value (from a table) times
// the FP32 scale. IEEE multiplication rounds the exact product once (RNE, subnormals, overflow to
// Inf), which is exactly what round_to_fp32 does; NaN is returned as golden's quiet NaN.
DMX_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DMX_HD float dequantize_element_fast(float element_value, uint8_t element_flags, uint8_t scale) {
  if (scale == kScaleNaNCode || (element_flags & kFlagNaN)) return f32_from_bits(kQuietNaNBits);
  return mul_rn(element_value, scale_to_f32(scale));
}

DMX_HD uint8_t code_from_magnitude(const FormatConsts& c, bool neg, uint32_t mag) {
  if (c.is_int) {
    const int q = neg ? -static_cast<int>(mag) : static_cast<int>(mag);
    return static_cast<uint8_t>(static_cast<int8_t>(q));
  }
  uint32_t code;
  if (mag < (1u << c.mbits)) {
    code = mag;  // subnormal or zero
  } else {
    const int p = msb32(mag);
    const uint32_t efield = static_cast<uint32_t>(p - c.mbits + 1);
    const uint32_t mfield = (mag >> (p - c.mbits)) - (1u << c.mbits);
    code = (efield << c.mbits) | mfield;
  }
  if (neg) code |= 1u << (c.bits - 1);
  return static_cast<uint8_t>(code);
}

DMX_HD uint8_t nan_code(const FormatConsts& c) {
  return static_cast<uint8_t>((1u << (c.bits - 1)) - 1u);
}

// FP32 bits x times 2^-shift, taken exactly, RNE onto the element grid (golden's
// encode_element_scaled).
DMX_HD uint8_t encode_scaled(const FormatConsts& c, uint32_t bits, int shift, bool ovf,
                             bool int8_allow_minus128) {
  const bool neg = bits >> 31;
  const uint32_t efield = (bits >> 23) & 0xffu;
  const uint32_t frac = bits & 0x7fffffu;
  const bool fp8_ovf = ovf && c.has_nan;
  const auto overflowed = [&]() -> uint8_t {
    if (fp8_ovf) {
      if (c.has_inf) {
        const uint8_t inf = static_cast<uint8_t>(((1u << c.ebits) - 1u) << c.mbits);
        return neg ? static_cast<uint8_t>(inf | 0x80u) : inf;
      }
      return static_cast<uint8_t>(nan_code(c) | (neg ? 0x80 : 0));
    }
    if (c.is_int && neg && int8_allow_minus128) return 0x80;
    return code_from_magnitude(c, neg, c.max_magnitude);
  };
  if (efield == 0xff) {
    if (frac != 0) return c.has_nan ? nan_code(c) : code_from_magnitude(c, false, c.max_magnitude);
    return overflowed();
  }
  const uint64_t mant = efield ? (frac | 0x800000u) : frac;
  int e = efield ? static_cast<int>(efield) - 150 : -149;
  if (mant == 0) return code_from_magnitude(c, neg, 0);
  e -= shift;
  const int L = msb64(mant) + e;
  if (L > c.emax + 1) return overflowed();
  const int qe =
      c.is_int ? c.quantum_exp : (L - c.mbits > c.quantum_exp ? L - c.mbits : c.quantum_exp);
  const int rs = qe - e;
  uint64_t q;
  if (rs <= 0) {
    q = mant << (-rs);
  } else if (rs > 40) {
    q = 0;
  } else {
    q = mant >> rs;
    const uint64_t rem = mant - (q << rs);
    const uint64_t half = 1ull << (rs - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
  }
  const uint64_t mag = q << (qe - c.quantum_exp);
  if (c.is_int && neg && int8_allow_minus128 && mag >= 128) return 0x80;
  if (mag > c.max_magnitude) return overflowed();
  return code_from_magnitude(c, neg, static_cast<uint32_t>(mag));
}

DMX_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

// The quantizer's fast route: y = x * 2^-s already computed in FP32 (exact, or an FP32 underflow
// far below half the element grid's smallest step, which rounds to the same signed zero), and
// |y| < 2^(emax+2) (true for every scale rule). Equal to encode_scaled for Overflow::SAT without
// the INT8 -128 knob (tested on the host against golden), in ~15 instructions:
//  - below the element's smallest normal 2^emin: |y| + 2^(q+23) rounds |y| to a multiple of the
//    quantum 2^q (RNE; the sum stays in that binade), and the bit difference is the code;
//  - above it: RNE of the FP32 significand to mbits bits in integer arithmetic (a carry moves
//    into the exponent), then the exponent re-biased: the FP32 bits become the element code;
//  - SAT: codes grow with the magnitude, so saturation is a min with the largest finite code.
DMX_HD uint8_t encode_fast(const FormatConsts& c, float y) {
  const uint32_t b = f32_bits(y);
  const bool neg = b >> 31;
  const uint32_t a = b & 0x7fffffffu;
  if (c.is_int) {
    const float t =
        mul_rn(f32_from_bits(a), f32_from_bits(static_cast<uint32_t>(127 - c.quantum_exp) << 23));
#if defined(__CUDA_ARCH__)
    uint32_t q = __float2uint_rn(t);
#else
    uint32_t q = static_cast<uint32_t>(std::nearbyint(t));  // default rounding: RNE
#endif
    q = q > c.max_magnitude ? c.max_magnitude : q;
    return static_cast<uint8_t>(neg ? 0u - q : q);
  }
  const int emin = c.quantum_exp + c.mbits;
  uint32_t code;
  if (a < (static_cast<uint32_t>(127 + emin) << 23)) {
    const float magic = f32_from_bits(static_cast<uint32_t>(127 + c.quantum_exp + 23) << 23);
    code = f32_bits(add_rn(f32_from_bits(a), magic)) - f32_bits(magic);
  } else {
    const int drop = 23 - c.mbits;
    const uint32_t r = a + ((1u << (drop - 1)) - 1u) + ((a >> drop) & 1u);
    code = (r >> drop) - (static_cast<uint32_t>(126 + emin) << c.mbits);
  }
  // largest finite code: every bit below the sign, less one for E4M3 (NaN) and four for E5M2
  // (Inf, NaNs) -- the code of max_magnitude either way
  const uint32_t max_code = code_from_magnitude(c, false, c.max_magnitude);
  code = code > max_code ? max_code : code;
  return static_cast<uint8_t>(neg ? code | (1u << (c.bits - 1)) : code);
}

// ---- shared exponent ---------------------------------------------------------------------------
// floor(log2 |x|) from the FP32 bits (x finite, non-zero), subnormals included.
DMX_HD int floor_log2_bits(uint32_t abs_bits) {
  const uint32_t e = abs_bits >> 23;
  if (e != 0) return static_cast<int>(e) - 127;
  return -149 + msb32(abs_bits);
}

DMX_HD int shared_exponent(const FormatConsts& c, uint32_t amax_bits, int rule) {
  if (amax_bits == 0) return -kScaleBiasE8M0;
  const int L = floor_log2_bits(amax_bits);
  int s = 0;
  if (rule == 0) {  // FLOOR
    s = L - c.emax;
  } else if (rule == 1) {  // CEIL
    const bool pow2 =
        (amax_bits >> 23) ? (amax_bits & 0x7fffffu) == 0 : (amax_bits & (amax_bits - 1)) == 0;
    s = L + (pow2 ? 0 : 1) - c.emax;
  } else if (rule == 2) {  // EVEN: amax rounded to mbits fraction bits, half away from zero
    uint64_t mant = (amax_bits >> 23) ? ((amax_bits & 0x7fffffu) | 0x800000u)
                                      : static_cast<uint64_t>(amax_bits) << (-149 - (L - 23));
    mant += 1ull << (23 - c.mbits - 1);
    s = ((mant >> 24) ? L + 1 : L) - c.emax;
  } else {  // RCEIL: the smallest s with amax * 2^-s <= max_normal, exactly
    const uint64_t mant = (amax_bits >> 23) ? ((amax_bits & 0x7fffffu) | 0x800000u) : amax_bits;
    const int ae = (amax_bits >> 23) ? static_cast<int>(amax_bits >> 23) - 150 : -149;
    const auto fits = [&](int sc) {
      const int d = (ae - sc) - c.quantum_exp;
      // mant < 2^24 <= ... and max_magnitude < 2^32: outside (-32, 40) the answer is known, and
      // inside it both shifted sides stay below 2^64.
      if (d >= 40) return false;
      if (d <= -32) return true;
      const uint64_t lhs = d >= 0 ? mant << d : mant;
      const uint64_t rhs = d >= 0 ? c.max_magnitude : static_cast<uint64_t>(c.max_magnitude) << -d;
      return lhs <= rhs;
    };
    s = L - msb32(c.max_magnitude) - c.quantum_exp - 1;
    while (!fits(s)) ++s;
    while (fits(s - 1)) --s;
  }
  return s < -kScaleBiasE8M0 ? -kScaleBiasE8M0 : (s > kScaleBiasE8M0 ? kScaleBiasE8M0 : s);
}

// ---- canonical packed layout -------------------------------------------------------------------
// Every packed row is a little-endian bit stream: element i at bits [i*bits, i*bits + bits). This
// is exactly the canonical layout: FP4 even element in the low nibble; FP6 four elements per
// 24-bit little-endian word; FP8/INT8 a byte each. A 32-element block takes 4 * bits bytes, so
// blocks (and rows, whose length is a multiple of 32) start on 4-byte boundaries.
DMX_HD int block_bytes(int bits) { return 4 * bits; }

template <int BITS>
DMX_HD uint32_t code_from_words(const uint32_t* w, int i) {
  const int pos = i * BITS, word = pos >> 5, off = pos & 31;
  uint32_t v = w[word] >> off;
  if (off + BITS > 32) v |= w[word + 1] << (32 - off);
  return v & ((1u << BITS) - 1u);
}
template <int BITS>
DMX_HD void put_code_words(uint32_t* w, int i, uint32_t code) {
  const int pos = i * BITS, word = pos >> 5, off = pos & 31;
  w[word] |= (code & ((1u << BITS) - 1u)) << off;
  if (off + BITS > 32) w[word + 1] |= (code & ((1u << BITS) - 1u)) >> (32 - off);
}
// Code i of a packed row (byte pointer; any i).
DMX_HD uint8_t code_at(int bits, const uint8_t* row, uint64_t i) {
  const uint64_t pos = i * static_cast<uint64_t>(bits);
  const uint64_t byte = pos >> 3;
  const int off = static_cast<int>(pos & 7);
  uint32_t v = row[byte] >> off;
  if (off + bits > 8) v |= static_cast<uint32_t>(row[byte + 1]) << (8 - off);
  return static_cast<uint8_t>(v & ((1u << bits) - 1u));
}

// ---- block quantizer ---------------------------------------------------------------------------
// Quantizes v[0..31] (FP32 bits, read through `load(i)`) into BITS-bit codes packed into
// w[0..BITS-1] (zeroed here); returns the E8M0 scale. Golden's quantize_block.
template <int BITS, typename Load>
DMX_HD uint8_t quantize_block(const FormatConsts& c, const QuantKnobs& k, Load load, uint32_t* w) {
  uint32_t amax = 0;
  bool non_finite = false;
  DMX_UNROLL
  for (int i = 0; i < kBlock; ++i) {
    const uint32_t a = load(i) & 0x7fffffffu;
    if (a >= 0x7f800000u) {
      non_finite = true;
    } else if (a > amax) {
      amax = a;
    }
  }
  DMX_UNROLL
  for (int i = 0; i < BITS; ++i) w[i] = 0;
  if (non_finite && (!k.non_finite_element || !c.has_nan)) return kScaleNaNCode;
  const int s = shared_exponent(c, amax, k.scale_rule);
  if (!non_finite && !k.overflow_ovf && !k.int8_allow_minus128) {
    const float inv_scale = scale_to_f32(static_cast<uint8_t>(kScaleBiasE8M0 - s));  // 2^-s
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i)
      put_code_words<BITS>(w, i, encode_fast(c, mul_rn(f32_from_bits(load(i)), inv_scale)));
  } else {
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i)
      put_code_words<BITS>(w, i,
                           encode_scaled(c, load(i), s, k.overflow_ovf, k.int8_allow_minus128));
  }
  return static_cast<uint8_t>(s + kScaleBiasE8M0);
}

// ---- exact block dot product -------------------------------------------------------------------
// A decode table per format: the signed element value in units of the quantum, plus flags.
// value32 holds the same values for the formats whose magnitudes fit (all but E5M2, which never
// takes the 32-bit route).
struct DecodeTable {
  int64_t value[256];
  int32_t value32[256];
  uint8_t flags[256];
};

// Width of the exact block-sum accumulator for a pair: the bound 32 * max_a * max_b decides.
//   32: below 2^31 (e.g. E4M3 x E2M1, INT8 x INT8, every FP6/FP4 pair)
//   64: below 2^63 (E4M3 x E4M3, E5M2 x E2M1, ...)
//  128: E5M2 x E5M2 (~2^68.6)
DMX_HD int acc_bits(const FormatConsts& a, const FormatConsts& b) {
  const double bound = 32.0 * static_cast<double>(a.max_magnitude) * b.max_magnitude;
  if (bound < 2147483648.0) return 32;
  if (bound < 9.2233720368547758e18) return 64;
  return 128;
}
DMX_HD bool needs_wide(const FormatConsts& a, const FormatConsts& b) {
  return acc_bits(a, b) == 128;
}

// Golden's dot_block with IEEE specials: the slow path, taken when a block holds NaN/Inf or its
// sum is exactly zero (the sign of a zero sum needs every product's sign).
template <typename GetA, typename GetB>
DMX_HD float dot_block_slow(const DecodeTable& ta, const DecodeTable& tb, int qsum, uint8_t sa,
                            uint8_t sb, GetA ga, GetB gb) {
  if (sa == kScaleNaNCode || sb == kScaleNaNCode) return f32_from_bits(kQuietNaNBits);
  bool nan = false, pinf = false, ninf = false, all_neg_zero = true;
  uint64_t pos_hi = 0, pos_lo = 0, neg_hi = 0, neg_lo = 0;  // sums of positive / negative products
  DMX_UNROLL
  for (int i = 0; i < kBlock; ++i) {
    const uint8_t ca = ga(i), cb = gb(i);
    const uint8_t fa = ta.flags[ca], fb = tb.flags[cb];
    const int64_t va = ta.value[ca], vb = tb.value[cb];
    const bool neg = (fa ^ fb) & kFlagNeg;
    if ((fa | fb) & kFlagNaN) {
      nan = true;
      continue;
    }
    if ((fa | fb) & kFlagInf) {
      const bool other_zero = (fa & kFlagInf) ? (!(fb & kFlagInf) && vb == 0) : (va == 0);
      if (other_zero)
        nan = true;
      else
        (neg ? ninf : pinf) = true;
      continue;
    }
    const uint64_t ma = static_cast<uint64_t>(va < 0 ? -va : va);
    const uint64_t mb = static_cast<uint64_t>(vb < 0 ? -vb : vb);
    // 64 x 64 -> 128-bit product; every magnitude is < 2^32, so the product fits 64 bits.
    const uint64_t p = ma * mb;
    if (p != 0 || !neg) all_neg_zero = false;
    uint64_t& lo = neg ? neg_lo : pos_lo;
    uint64_t& hi = neg ? neg_hi : pos_hi;
    lo += p;
    hi += lo < p ? 1 : 0;
  }
  if (nan || (pinf && ninf)) return f32_from_bits(kQuietNaNBits);
  if (pinf) return f32_from_bits(0x7f800000u);
  if (ninf) return f32_from_bits(0xff800000u);
  const bool neg = neg_hi > pos_hi || (neg_hi == pos_hi && neg_lo > pos_lo);
  uint64_t hi, lo;
  if (neg) {
    lo = neg_lo - pos_lo;
    hi = neg_hi - pos_hi - (neg_lo < pos_lo ? 1 : 0);
  } else {
    lo = pos_lo - neg_lo;
    hi = pos_hi - neg_hi - (pos_lo < neg_lo ? 1 : 0);
  }
  if (hi == 0 && lo == 0) return f32_from_bits(all_neg_zero ? 0x80000000u : 0u);
  return round_to_fp32_u128(
      neg, hi, lo, qsum + static_cast<int>(sa) + static_cast<int>(sb) - 2 * kScaleBiasE8M0);
}

// One block step of dot_blocked: r = RNE_fp32(2^(sa+sb-254) * sum_i Pa_i * Pb_i), the sum exact.
// AccBits (acc_bits of the pair) is the integer width of the sum; specials_a / specials_b say
// whether a format has NaN/Inf codes. The fast loop is a plain integer dot product; NaN/Inf
// blocks and zero sums take dot_block_slow, which follows golden's IEEE rules.
template <int AccBits, typename GetA, typename GetB>
DMX_HD float dot_block(const DecodeTable& ta, const DecodeTable& tb, bool specials_a,
                       bool specials_b, int qsum, uint8_t sa, uint8_t sb, GetA ga, GetB gb) {
  static_assert(AccBits == 32 || AccBits == 64 || AccBits == 128, "accumulator width");
  if (sa == kScaleNaNCode || sb == kScaleNaNCode) return f32_from_bits(kQuietNaNBits);
  uint8_t any = 0;
  bool neg;
  uint64_t hi = 0, lo = 0;
  if constexpr (AccBits == 128) {
    __int128 sum = 0;
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i) {
      const uint8_t ca = ga(i), cb = gb(i);
      sum += static_cast<__int128>(ta.value[ca]) * tb.value[cb];
      if (specials_a) any |= ta.flags[ca];
      if (specials_b) any |= tb.flags[cb];
    }
    neg = sum < 0;
    const unsigned __int128 m = static_cast<unsigned __int128>(neg ? -sum : sum);
    hi = static_cast<uint64_t>(m >> 64);
    lo = static_cast<uint64_t>(m);
  } else {
    using Acc = std::conditional_t<AccBits == 32, int32_t, int64_t>;
    Acc sum = 0;
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i) {
      const uint8_t ca = ga(i), cb = gb(i);
      if constexpr (AccBits == 32)
        sum += ta.value32[ca] * tb.value32[cb];
      else
        sum += ta.value[ca] * tb.value[cb];
      if (specials_a) any |= ta.flags[ca];
      if (specials_b) any |= tb.flags[cb];
    }
    neg = sum < 0;
    lo = neg ? 0ull - static_cast<uint64_t>(static_cast<int64_t>(sum))
             : static_cast<uint64_t>(static_cast<int64_t>(sum));
  }
  if ((any & (kFlagNaN | kFlagInf)) || (hi == 0 && lo == 0))
    return dot_block_slow(ta, tb, qsum, sa, sb, ga, gb);
  return round_to_fp32_u128(
      neg, hi, lo, qsum + static_cast<int>(sa) + static_cast<int>(sb) - 2 * kScaleBiasE8M0);
}

// Builds a decode table from decode_exact (host and device alike).
DMX_HD void fill_decode_table(const FormatConsts& c, DecodeTable& t) {
  for (int code = 0; code < 256; ++code) {
    const ElemExact e = decode_exact(c, static_cast<uint8_t>(code & ((1 << c.bits) - 1)));
    const int64_t m = (e.flags & (kFlagNaN | kFlagInf)) ? 0 : static_cast<int64_t>(e.magnitude);
    t.value[code] = (e.flags & kFlagNeg) ? -m : m;
    t.value32[code] = static_cast<int32_t>(t.value[code]);  // exact except E5M2 (unused there)
    t.flags[code] = e.flags;
  }
}

// Host only: the constants of a format, from golden's table (the one source of truth).
inline FormatConsts make_consts(MxFormat f) {
  const FormatInfo& fi = format_info(f);
  return FormatConsts{fi.bits,          fi.ebits,   fi.mbits,   fi.emax,  fi.quantum_exp,
                      fi.max_magnitude, fi.has_inf, fi.has_nan, fi.is_int};
}
inline QuantKnobs make_knobs(const QuantizeOptions& o) {
  return QuantKnobs{static_cast<int>(o.scale_rule), o.overflow == Overflow::OVF,
                    o.non_finite == NonFinitePolicy::ELEMENT, o.int8_allow_minus128};
}

}  // namespace dmx::cuda::detail
