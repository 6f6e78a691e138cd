// MX arithmetic of the CUDA kernels (__host__ __device__): what is particular to the GPU, on top
// of golden's header-only MX core (dmx/mx_core.h), which supplies the format constants, element
// decode and encode, the shared-exponent rules, the E8M0 decode, the exact FP32 rounding and the
// block-sum rules. Here: the quantizer's fast element route, the packed-row bit access, the block
// quantizer over packed words, and the decode-table block dot product with its accumulator widths.
// The host tests (tests/kernels/cuda/test_cuda_host.cc) check these against golden, so the
// arithmetic the GPU runs is covered on machines without a GPU.
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

inline constexpr int kBlock = kBlockSize;
inline constexpr uint32_t kQuietNaNBits = core::kQuietNaNBits;

// Element flags of a decode table entry.
inline constexpr uint8_t kFlagNeg = 1, kFlagNaN = 2, kFlagInf = 4;

// Kernels take a format's constants by value: golden's FormatInfo (device code cannot read the
// host table), and the quantizer's options as golden's QuantizeOptions.
using FormatConsts = FormatInfo;
inline FormatConsts make_consts(MxFormat f) { return format_info(f); }

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

// E8M0 scale -> FP32: 2^(code-127), NaN for 0xFF.
DMX_HD float scale_to_f32(uint8_t code) { return f32_from_bits(core::scale_fp32_bits(code)); }

// FP32 -> BF16 bits, RNE, NaN kept quiet.
DMX_HD uint16_t f32_to_bf16_bits(float x) { return core::bf16_from_fp32_bits(f32_bits(x)); }

// Element code -> FP32 value times 2^(scale-127): golden's dequantize_block for one element.
DMX_HD float dequantize_element(const FormatConsts& c, uint8_t scale, uint8_t code) {
  if (scale == kScaleNaN) return f32_from_bits(kQuietNaNBits);
  const ElementValue e = core::decode_element(c, code);
  if (e.is_nan) return f32_from_bits(kQuietNaNBits);
  if (e.is_inf) return f32_from_bits(e.negative ? 0xff800000u : 0x7f800000u);
  return f32_from_bits(core::round_to_fp32_bits(
      e.negative, e.magnitude, c.quantum_exp + static_cast<int>(scale) - kScaleBias));
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
  if (scale == kScaleNaN || (element_flags & kFlagNaN)) return f32_from_bits(kQuietNaNBits);
  return mul_rn(element_value, scale_to_f32(scale));
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
// |y| < 2^(emax+2) (true for every scale rule). Equal to core::encode_element for Overflow::SAT
// without the INT8 -128 knob (tested on the host against golden), in ~15 instructions:
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
  const uint32_t max_code = core::code_from_magnitude(c, false, c.max_magnitude);
  code = code > max_code ? max_code : code;
  return static_cast<uint8_t>(neg ? code | (1u << (c.bits - 1)) : code);
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
DMX_HD uint8_t quantize_block(const FormatConsts& c, const QuantizeOptions& k, Load load,
                              uint32_t* w) {
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
  if (non_finite && (k.non_finite == NonFinitePolicy::NAN_SCALE || !c.has_nan)) return kScaleNaN;
  const int s = core::shared_exponent(c, amax, k.scale_rule);
  if (!non_finite && k.overflow == Overflow::SAT && !k.int8_allow_minus128) {
    const float inv_scale = scale_to_f32(static_cast<uint8_t>(kScaleBias - s));  // 2^-s
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i)
      put_code_words<BITS>(w, i, encode_fast(c, mul_rn(f32_from_bits(load(i)), inv_scale)));
  } else {
    DMX_UNROLL
    for (int i = 0; i < kBlock; ++i)
      put_code_words<BITS>(w, i,
                           core::encode_element(c, load(i), s, k.overflow, k.int8_allow_minus128));
  }
  return static_cast<uint8_t>(s + kScaleBias);
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

// A decode-table entry as the MX core's element value.
DMX_HD ElementValue element_of(const DecodeTable& t, uint8_t code) {
  ElementValue v;
  v.negative = t.flags[code] & kFlagNeg;
  v.is_nan = t.flags[code] & kFlagNaN;
  v.is_inf = t.flags[code] & kFlagInf;
  v.magnitude = static_cast<uint32_t>(t.value[code] < 0 ? -t.value[code] : t.value[code]);
  return v;
}

// dot_block with IEEE specials (the MX core's block sum): the slow path, taken when a block holds
// NaN/Inf or its sum is exactly zero (the sign of a zero sum needs every product's sign).
template <typename GetA, typename GetB>
DMX_HD float dot_block_slow(const DecodeTable& ta, const DecodeTable& tb, int qsum, uint8_t sa,
                            uint8_t sb, GetA ga, GetB gb) {
  core::BlockSum sum;
  DMX_UNROLL
  for (int i = 0; i < kBlock; ++i) sum.add(element_of(ta, ga(i)), element_of(tb, gb(i)));
  return f32_from_bits(sum.result_bits(qsum, sa, sb));
}

// One block step of dot_blocked: r = RNE_fp32(2^(sa+sb-254) * sum_i Pa_i * Pb_i), the sum exact.
// AccBits (acc_bits of the pair) is the integer width of the sum; specials_a / specials_b say
// whether a format has NaN/Inf codes. The fast loop is a plain integer dot product; NaN/Inf
// blocks and zero sums take dot_block_slow, which follows golden's IEEE rules.
template <int AccBits, typename GetA, typename GetB>
DMX_HD float dot_block(const DecodeTable& ta, const DecodeTable& tb, bool specials_a,
                       bool specials_b, int qsum, uint8_t sa, uint8_t sb, GetA ga, GetB gb) {
  static_assert(AccBits == 32 || AccBits == 64 || AccBits == 128, "accumulator width");
  if (sa == kScaleNaN || sb == kScaleNaN) return f32_from_bits(kQuietNaNBits);
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
  return f32_from_bits(core::round_to_fp32_bits(
      neg, hi, lo, qsum + static_cast<int>(sa) + static_cast<int>(sb) - 2 * kScaleBias));
}

// Builds a decode table from the MX core's decode (host and device alike).
DMX_HD void fill_decode_table(const FormatConsts& c, DecodeTable& t) {
  for (int code = 0; code < 256; ++code) {
    const ElementValue e =
        core::decode_element(c, static_cast<uint8_t>(code & ((1 << c.bits) - 1)));
    const int64_t m = (e.is_nan || e.is_inf) ? 0 : static_cast<int64_t>(e.magnitude);
    t.value[code] = e.negative ? -m : m;
    t.value32[code] = static_cast<int32_t>(t.value[code]);  // exact except E5M2 (unused there)
    t.flags[code] = static_cast<uint8_t>((e.negative ? kFlagNeg : 0) | (e.is_nan ? kFlagNaN : 0) |
                                         (e.is_inf ? kFlagInf : 0));
  }
}

}  // namespace dmx::cuda::detail
