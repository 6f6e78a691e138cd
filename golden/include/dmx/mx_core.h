// dMX MX core: the format table and the bit-level MX arithmetic, header-only and constexpr, for
// host code (golden, the CPU kernels' scalar paths) and CUDA device code alike.
//
// This is the one place where the numeric contract (golden/README.md) is written as code: the
// formats' constants, element decode and encode (RNE onto the element grid, saturation and the
// FP8 overflow rules), the E8M0 scale, the shared-exponent rules, the exact RNE rounding of a wide
// integer times a power of two to FP32, and the exact block sum of dot_blocked. Everything works
// on integers and FP32 bit patterns so that it is constexpr and identical on every compiler and
// device. golden.h wraps it in the float API; the independent checks (GMP oracle, NVIDIA's
// conversions, the RTL) never use it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DMX_CORE_HD __host__ __device__
#else
#define DMX_CORE_HD
#endif

namespace dmx {

// Elements per shared scale (OCP MX v1.0: k = 32 for every concrete format).
inline constexpr int kBlockSize = 32;

// Element formats, in the order used by every table of the project.
enum class MxFormat : uint8_t { E4M3 = 0, E5M2 = 1, E3M2 = 2, E2M3 = 3, E2M1 = 4, INT8 = 5 };
inline constexpr int kNumFormats = 6;

// One source of truth for a format's constants.
//
// Every finite element value is `magnitude * 2^quantum_exp` with an integer magnitude in
// [0, max_magnitude]; this "integer in units of the quantum" view is what the exact dot products,
// the RTL datapath and the integer kernels all use.
struct FormatInfo {
  MxFormat format;
  const char* name;       // "E4M3", ...
  const char* long_name;  // "FP8 E4M3", ...
  int bits;               // storage bits of one element code
  int ebits;              // exponent bits (0 for INT8)
  int mbits;        // mantissa (fraction) bits; INT8: 6 fraction bits of a 2's-complement code
  int bias;         // exponent bias (0 for INT8)
  int emax;         // exponent of the largest normal binade
  int quantum_exp;  // log2 of the smallest step (min subnormal); 1 - bias - mbits for floats
  uint32_t max_magnitude;  // max normal in units of 2^quantum_exp
  float max_normal;        // largest finite value
  float min_subnormal;     // smallest positive value (== 2^quantum_exp)
  bool has_inf;            // E5M2 only
  bool has_nan;            // E4M3, E5M2
  bool is_int;             // INT8
};

namespace core {

// The table is built from (ebits, mbits, bias) so the derived constants cannot disagree.
constexpr float pow2f(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

constexpr FormatInfo make_float(MxFormat f, const char* name, const char* long_name, int ebits,
                                int mbits, int bias, bool has_inf, bool has_nan) {
  // Largest exponent field that holds finite values, and the largest mantissa there.
  const int top_field = (1 << ebits) - 1;
  int emax_field = top_field;
  int max_mant = (1 << mbits) - 1;
  if (has_inf) {
    emax_field = top_field - 1;  // E5M2: the all-ones exponent is Inf/NaN (IEEE-like)
  } else if (has_nan) {
    max_mant = (1 << mbits) - 2;  // E4M3: only S.1111.111 is NaN
  }
  FormatInfo fi{};
  fi.format = f;
  fi.name = name;
  fi.long_name = long_name;
  fi.bits = 1 + ebits + mbits;
  fi.ebits = ebits;
  fi.mbits = mbits;
  fi.bias = bias;
  fi.emax = emax_field - bias;
  fi.quantum_exp = 1 - bias - mbits;
  // max = (1.max_mant) * 2^emax, in units of 2^quantum_exp.
  fi.max_magnitude = static_cast<uint32_t>((1 << mbits) | max_mant) << (emax_field - 1);
  fi.max_normal = static_cast<float>(fi.max_magnitude) * pow2f(fi.quantum_exp);
  fi.min_subnormal = pow2f(fi.quantum_exp);
  fi.has_inf = has_inf;
  fi.has_nan = has_nan;
  fi.is_int = false;
  return fi;
}

constexpr FormatInfo make_int8() {
  FormatInfo fi{};
  fi.format = MxFormat::INT8;
  fi.name = "INT8";
  fi.long_name = "INT8";
  fi.bits = 8;
  fi.mbits = 6;  // two's complement code times 2^-6
  fi.quantum_exp = -6;
  fi.max_magnitude = 127;
  fi.max_normal = 127.0f / 64;
  fi.min_subnormal = 1.0f / 64;
  fi.is_int = true;
  return fi;
}

}  // namespace core

// A constant-initialized table: no initialization guard on the hot paths that read it. Device
// code does not read it (a host array): kernels take the FormatInfo of their format by value.
inline constexpr FormatInfo kFormatTable[kNumFormats] = {
    core::make_float(MxFormat::E4M3, "E4M3", "FP8 E4M3", 4, 3, 7, false, true),
    core::make_float(MxFormat::E5M2, "E5M2", "FP8 E5M2", 5, 2, 15, true, true),
    core::make_float(MxFormat::E3M2, "E3M2", "FP6 E3M2", 3, 2, 3, false, false),
    core::make_float(MxFormat::E2M3, "E2M3", "FP6 E2M3", 2, 3, 1, false, false),
    core::make_float(MxFormat::E2M1, "E2M1", "FP4 E2M1", 2, 1, 1, false, false),
    core::make_int8(),
};
static_assert(kFormatTable[0].max_normal == 448.0f && kFormatTable[1].max_normal == 57344.0f);
static_assert(kFormatTable[2].max_normal == 28.0f && kFormatTable[3].max_normal == 7.5f);
static_assert(kFormatTable[4].max_normal == 6.0f && kFormatTable[5].max_normal == 127.0f / 64);

constexpr const FormatInfo& format_info(MxFormat f) { return kFormatTable[static_cast<int>(f)]; }

// ---- E8M0 shared scale -------------------------------------------------------------------------
inline constexpr uint8_t kScaleNaN = 0xFF;
inline constexpr int kScaleBias = 127;

// ---- Policies ----------------------------------------------------------------------------------
enum class ScaleRule : uint8_t {
  FLOOR,  // s = floor(log2 amax) - emax                  (OCP v1.0, default)
  CEIL,   // s = ceil(log2 amax) - emax
  EVEN,   // s = floor(log2 round_m(amax)) - emax, amax first rounded to the element's mantissa
          //     width (half away from zero), so a block that would round up a binade is not clipped
  RCEIL,  // s = ceil(log2(amax / max_normal)): the smallest scale that never saturates
};
enum class Overflow : uint8_t {
  SAT,  // saturate to +-max normal (default)
  OVF,  // FP8 only: overflow to Inf (E5M2) / NaN (E4M3) as OFP8 defines; other formats saturate
};
enum class NonFinitePolicy : uint8_t {
  NAN_SCALE,  // a block holding NaN or Inf gets scale 0xFF, element codes 0 (default)
  ELEMENT,    // scale from the finite values; NaN/Inf encoded per element where the format can
              // (E4M3/E5M2), else the block falls back to NAN_SCALE
};
struct QuantizeOptions {
  ScaleRule scale_rule = ScaleRule::FLOOR;
  Overflow overflow = Overflow::SAT;
  NonFinitePolicy non_finite = NonFinitePolicy::NAN_SCALE;
  bool int8_allow_minus128 = false;  // INT8 lower bound -128 instead of -127
};

// A decoded element code: value = (negative ? -1 : 1) * magnitude * 2^quantum_exp, or Inf/NaN.
struct ElementValue {
  bool negative = false;
  bool is_nan = false;
  bool is_inf = false;
  uint32_t magnitude = 0;
};

namespace core {

inline constexpr uint32_t kQuietNaNBits = 0x7fc00000u;  // std::numeric_limits<float>::quiet_NaN()
inline constexpr uint32_t kInfBits = 0x7f800000u;

// Index of the highest set bit (v != 0).
DMX_CORE_HD constexpr int msb32(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return 31 - __clz(v);
#else
  return 31 - __builtin_clz(v);
#endif
}
DMX_CORE_HD constexpr int msb64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return 63 - __clzll(static_cast<long long>(v));
#else
  return 63 - __builtin_clzll(v);
#endif
}

// E8M0 code -> FP32 bits of 2^(code-127): 2^-127 is the FP32 subnormal 0x00400000; NaN for 0xFF.
DMX_CORE_HD constexpr uint32_t scale_fp32_bits(uint8_t code) {
  if (code == kScaleNaN) return kQuietNaNBits;
  return code == 0 ? 0x00400000u : static_cast<uint32_t>(code) << 23;
}

// FP32 bits -> BF16 bits, round to nearest even, NaN kept quiet.
DMX_CORE_HD constexpr uint16_t bf16_from_fp32_bits(uint32_t b) {
  if ((b & 0x7fffffffu) > kInfBits) return static_cast<uint16_t>((b >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>((b + rounding) >> 16);
}

// ---- exact rounding to FP32 --------------------------------------------------------------------
// FP32 bits of RNE((neg ? -1 : 1) * m * 2^exp), subnormals kept, overflow to Inf.
DMX_CORE_HD constexpr uint32_t round_to_fp32_bits(bool neg, uint64_t m, int exp) {
  const uint32_t sign = neg ? 0x80000000u : 0u;
  if (m == 0) return sign;
  const int L = msb64(m) + exp;  // floor(log2 |value|)
  if (L > 127) return sign | kInfBits;
  const int qe = L - 23 > -149 ? L - 23 : -149;  // ulp exponent of the target binade
  const int shift = qe - exp;                    // how far right the magnitude must move
  uint64_t r = 0;
  if (shift <= 0) {
    r = m << (-shift);  // exact, < 2^24
  } else if (shift <= 64) {
    const uint64_t q = shift == 64 ? 0 : m >> shift;
    const uint64_t rem = shift == 64 ? m : m - (q << shift);
    const uint64_t half = 1ull << (shift - 1);
    r = q;
    if (rem > half || (rem == half && (r & 1))) ++r;
  }  // else: m < 2^64 is below half the smallest subnormal's ulp at this exponent: r = 0
  int e = qe;
  if (r >> 24) {  // rounding carried into the next binade
    r >>= 1;
    ++e;
  }
  if (r == 0) return sign;
  if (r < (1u << 23)) return sign | static_cast<uint32_t>(r);  // subnormal
  const int biased = e + 23 + 127;
  if (biased >= 255) return sign | kInfBits;
  return sign | (static_cast<uint32_t>(biased) << 23) | (static_cast<uint32_t>(r) & 0x7fffffu);
}

// The same for a 128-bit magnitude hi:lo. The top 64 bits plus a sticky bit for the rest round
// exactly as the whole value: at least 40 bits lie below the sticky position (FP32 keeps 24).
DMX_CORE_HD constexpr uint32_t round_to_fp32_bits(bool neg, uint64_t hi, uint64_t lo, int exp) {
  if (hi == 0) return round_to_fp32_bits(neg, lo, exp);
  const int s = msb64(hi) + 1;  // shifting right by s keeps 64 bits, the top one set
  const uint64_t window = (hi << (64 - s)) | (s == 64 ? 0 : lo >> s);
  const uint64_t dropped = s == 64 ? lo : lo & ((1ull << s) - 1);
  return round_to_fp32_bits(neg, window | (dropped ? 1ull : 0ull), exp + s);
}

// ---- elements ----------------------------------------------------------------------------------
DMX_CORE_HD constexpr ElementValue decode_element(const FormatInfo& fi, uint8_t code) {
  ElementValue v;
  if (fi.is_int) {
    const int q = static_cast<int8_t>(code);
    v.negative = q < 0;
    v.magnitude = static_cast<uint32_t>(q < 0 ? -q : q);
    return v;
  }
  const int m = fi.mbits;
  const uint32_t c = code & ((1u << fi.bits) - 1u);
  v.negative = (c >> (fi.bits - 1)) & 1u;
  const uint32_t efield = (c >> m) & ((1u << fi.ebits) - 1u);
  const uint32_t mfield = c & ((1u << m) - 1u);
  const uint32_t top = (1u << fi.ebits) - 1u;
  if (fi.has_inf && efield == top) {  // E5M2: IEEE-like specials
    v.is_inf = mfield == 0;
    v.is_nan = mfield != 0;
    return v;
  }
  if (!fi.has_inf && fi.has_nan && efield == top && mfield == (1u << m) - 1u) {  // E4M3 NaN
    v.is_nan = true;
    return v;
  }
  v.magnitude = efield == 0 ? mfield : ((1u << m) | mfield) << (efield - 1);
  return v;
}

// Encodes a magnitude already on the grid (in units of 2^quantum_exp, <= max_magnitude).
DMX_CORE_HD constexpr uint8_t code_from_magnitude(const FormatInfo& fi, bool negative,
                                                  uint32_t mag) {
  if (fi.is_int) {
    const int q = negative ? -static_cast<int>(mag) : static_cast<int>(mag);
    return static_cast<uint8_t>(static_cast<int8_t>(q));
  }
  const int m = fi.mbits;
  uint32_t c = mag;  // subnormal (or zero)
  if (mag >= (1u << m)) {
    const int p = msb32(mag);
    const uint32_t efield = static_cast<uint32_t>(p - m + 1);
    const uint32_t mfield = (mag >> (p - m)) - (1u << m);
    c = (efield << m) | mfield;
  }
  if (negative) c |= 1u << (fi.bits - 1);
  return static_cast<uint8_t>(c);
}

// OFP8: E4M3 NaN is S.1111.111, E5M2 canonical quiet NaN S.11111.11.
DMX_CORE_HD constexpr uint8_t nan_code(const FormatInfo& fi) {
  return static_cast<uint8_t>((1u << (fi.bits - 1)) - 1u);
}
DMX_CORE_HD constexpr uint8_t inf_code(const FormatInfo& fi, bool negative) {  // E5M2 only
  const uint8_t c = static_cast<uint8_t>(((1u << fi.ebits) - 1u) << fi.mbits);
  return negative ? static_cast<uint8_t>(c | 0x80u) : c;
}

// The FP32 value with bits `bits`, times 2^-shift taken exactly (no intermediate FP32 rounding),
// rounded once (RNE) onto the element grid. SAT saturates finite overflow and Inf to +-max; OVF
// gives Inf (E5M2) / NaN (E4M3) for FP8 and saturates elsewhere; NaN gives the format's NaN or,
// where it has none, +max (as NVIDIA's cuda_fp6.h / cuda_fp4.h do).
DMX_CORE_HD constexpr uint8_t encode_element(const FormatInfo& fi, uint32_t bits, int shift,
                                             Overflow ov, bool int8_allow_minus128) {
  const bool neg = bits >> 31;
  const uint32_t efield = (bits >> 23) & 0xffu;
  const uint32_t frac = bits & 0x7fffffu;
  const bool fp8_ovf = ov == Overflow::OVF && fi.has_nan;
  const auto overflowed = [&]() -> uint8_t {
    if (fp8_ovf)
      return fi.has_inf ? inf_code(fi, neg)
                        : static_cast<uint8_t>(nan_code(fi) | (neg ? 0x80u : 0u));
    if (fi.is_int && neg && int8_allow_minus128) return 0x80;
    return code_from_magnitude(fi, neg, fi.max_magnitude);
  };
  if (efield == 0xff) {
    if (frac != 0)
      return fi.has_nan ? nan_code(fi) : code_from_magnitude(fi, false, fi.max_magnitude);
    return overflowed();  // Inf: SAT -> max, OVF -> Inf/NaN
  }
  // |x| = mant * 2^e exactly.
  const uint64_t mant = efield ? (frac | 0x800000u) : frac;
  if (mant == 0) return code_from_magnitude(fi, neg, 0);
  const int e = (efield ? static_cast<int>(efield) - 150 : -149) - shift;
  const int L = msb64(mant) + e;  // floor(log2 |x * 2^-shift|)
  // Anything at or above 2^(emax+2) overflows for every format; stop before shifts get huge.
  if (L > fi.emax + 1) return overflowed();
  // ulp exponent of the target binade on the element grid.
  const int qe =
      fi.is_int ? fi.quantum_exp : (L - fi.mbits > fi.quantum_exp ? L - fi.mbits : fi.quantum_exp);
  const int rs = qe - e;  // right shift of mant onto the grid
  uint64_t q = 0;
  if (rs <= 0) {
    q = mant << (-rs);
  } else if (rs <= 40) {  // beyond, mant < 2^24 is below half a step: q = 0
    q = mant >> rs;
    const uint64_t rem = mant - (q << rs);
    const uint64_t half = 1ull << (rs - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
  }
  const uint64_t mag = q << (qe - fi.quantum_exp);
  if (fi.is_int && neg && int8_allow_minus128 && mag >= 128) return 0x80;
  if (mag > fi.max_magnitude) return overflowed();
  return code_from_magnitude(fi, neg, static_cast<uint32_t>(mag));
}

// ---- shared exponent ---------------------------------------------------------------------------
// floor(log2 |x|) from the FP32 bits of |x| (finite, non-zero), subnormals included.
DMX_CORE_HD constexpr int floor_log2_bits(uint32_t abs_bits) {
  const uint32_t e = abs_bits >> 23;
  if (e != 0) return static_cast<int>(e) - 127;
  return -149 + msb32(abs_bits);
}

// Shared exponent s (unbiased, clamped to [-127, 127]) of a block whose max |V_i| has the FP32
// bits `amax_bits` (finite).
DMX_CORE_HD constexpr int shared_exponent(const FormatInfo& fi, uint32_t amax_bits,
                                          ScaleRule rule) {
  if (amax_bits == 0) return -kScaleBias;
  const int L = floor_log2_bits(amax_bits);
  const bool normal = (amax_bits >> 23) != 0;
  int s = 0;
  switch (rule) {
    case ScaleRule::FLOOR:
      s = L - fi.emax;
      break;
    case ScaleRule::CEIL: {
      const bool pow2 = normal ? (amax_bits & 0x7fffffu) == 0 : (amax_bits & (amax_bits - 1)) == 0;
      s = L + (pow2 ? 0 : 1) - fi.emax;
      break;
    }
    case ScaleRule::EVEN: {  // amax rounded to mbits fraction bits, half away from zero
      uint64_t mant = normal ? ((amax_bits & 0x7fffffu) | 0x800000u)
                             : static_cast<uint64_t>(amax_bits) << (-149 - (L - 23));
      mant += 1ull << (23 - fi.mbits - 1);
      s = ((mant >> 24) ? L + 1 : L) - fi.emax;
      break;
    }
    case ScaleRule::RCEIL: {  // the smallest s with amax * 2^-s <= max_normal, exactly
      const uint64_t mant = normal ? ((amax_bits & 0x7fffffu) | 0x800000u) : amax_bits;
      const int ae = normal ? static_cast<int>(amax_bits >> 23) - 150 : -149;
      const auto fits = [&](int sc) {
        const int d = (ae - sc) - fi.quantum_exp;
        // mant < 2^24 and max_magnitude < 2^32: outside (-32, 40) the answer is known, and
        // inside it both shifted sides stay below 2^64.
        if (d >= 40) return false;
        if (d <= -32) return true;
        const uint64_t lhs = d >= 0 ? mant << d : mant;
        const uint64_t rhs =
            d >= 0 ? fi.max_magnitude : static_cast<uint64_t>(fi.max_magnitude) << -d;
        return lhs <= rhs;
      };
      s = L - msb32(fi.max_magnitude) - fi.quantum_exp - 1;
      while (!fits(s)) ++s;
      while (fits(s - 1)) --s;
      break;
    }
  }
  return s < -kScaleBias ? -kScaleBias : (s > kScaleBias ? kScaleBias : s);
}

// ---- the exact block sum of dot_blocked
// ---------------------------------------------------------- One block step: r =
// RNE_fp32(2^(sa+sb-254) * sum_i Pa_i * Pb_i), the sum exact. IEEE rules for the specials: a NaN
// scale or product (NaN, Inf * 0) gives NaN, as do Infs of both signs; an exact zero sum is -0 only
// when every product is -0.
struct BlockSum {
  unsigned __int128 pos = 0, neg = 0;  // sums of the positive and negative products' magnitudes
  bool nan = false, pos_inf = false, neg_inf = false, all_neg_zero = true;

  DMX_CORE_HD constexpr void add(const ElementValue& a, const ElementValue& b) {
    const bool negative = a.negative != b.negative;
    if (a.is_nan || b.is_nan) {
      nan = true;
    } else if (a.is_inf || b.is_inf) {
      const bool other_zero = a.is_inf ? (!b.is_inf && b.magnitude == 0) : a.magnitude == 0;
      if (other_zero)
        nan = true;  // Inf * 0
      else
        (negative ? neg_inf : pos_inf) = true;
      all_neg_zero = false;
    } else {
      // Magnitudes are below 2^32: the product fits 64 bits.
      const uint64_t p = static_cast<uint64_t>(a.magnitude) * b.magnitude;
      if (p != 0 || !negative) all_neg_zero = false;
      (negative ? neg : pos) += p;
    }
  }
  // FP32 bits of the block's result; `qsum` = quantum_exp(a) + quantum_exp(b).
  DMX_CORE_HD constexpr uint32_t result_bits(int qsum, uint8_t sa, uint8_t sb) const {
    if (sa == kScaleNaN || sb == kScaleNaN || nan || (pos_inf && neg_inf)) return kQuietNaNBits;
    if (pos_inf) return kInfBits;
    if (neg_inf) return 0x80000000u | kInfBits;
    if (pos == neg) return all_neg_zero ? 0x80000000u : 0u;
    const bool negative = neg > pos;
    const unsigned __int128 m = negative ? neg - pos : pos - neg;
    return round_to_fp32_bits(negative, static_cast<uint64_t>(m >> 64), static_cast<uint64_t>(m),
                              qsum + static_cast<int>(sa) + static_cast<int>(sb) - 2 * kScaleBias);
  }
};

}  // namespace core
}  // namespace dmx
