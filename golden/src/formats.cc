// Format constants, element encode/decode, and the exact FP32 rounding everything else uses.
#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "dmx/golden.h"

namespace dmx {
namespace {

// The table is built from (ebits, mbits, bias) so the derived constants cannot disagree.
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
  const int emax = emax_field - bias;
  const int quantum_exp = 1 - bias - mbits;
  // max = (1.max_mant) * 2^emax, in units of 2^quantum_exp.
  const uint32_t max_mag = static_cast<uint32_t>((1 << mbits) | max_mant) << (emax_field - 1);
  FormatInfo fi{};
  fi.format = f;
  fi.name = name;
  fi.long_name = long_name;
  fi.bits = 1 + ebits + mbits;
  fi.ebits = ebits;
  fi.mbits = mbits;
  fi.bias = bias;
  fi.emax = emax;
  fi.quantum_exp = quantum_exp;
  fi.max_magnitude = max_mag;
  fi.has_inf = has_inf;
  fi.has_nan = has_nan;
  fi.is_int = false;
  return fi;
}

constexpr float pow2f(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

constexpr FormatInfo with_values(FormatInfo fi) {
  fi.max_normal = static_cast<float>(fi.max_magnitude) * pow2f(fi.quantum_exp);
  fi.min_subnormal = pow2f(fi.quantum_exp);
  return fi;
}

constexpr FormatInfo make_int8() {
  FormatInfo fi{};
  fi.format = MxFormat::INT8;
  fi.name = "INT8";
  fi.long_name = "INT8";
  fi.bits = 8;
  fi.ebits = 0;
  fi.mbits = 6;  // two's complement code times 2^-6
  fi.bias = 0;
  fi.emax = 0;
  fi.quantum_exp = -6;
  fi.max_magnitude = 127;
  fi.has_inf = false;
  fi.has_nan = false;
  fi.is_int = true;
  return fi;
}

// A constant-initialized table: no initialization guard on the hot paths that read it.
constexpr FormatInfo kFormatTable[kNumFormats] = {
    with_values(make_float(MxFormat::E4M3, "E4M3", "FP8 E4M3", 4, 3, 7, false, true)),
    with_values(make_float(MxFormat::E5M2, "E5M2", "FP8 E5M2", 5, 2, 15, true, true)),
    with_values(make_float(MxFormat::E3M2, "E3M2", "FP6 E3M2", 3, 2, 3, false, false)),
    with_values(make_float(MxFormat::E2M3, "E2M3", "FP6 E2M3", 2, 3, 1, false, false)),
    with_values(make_float(MxFormat::E2M1, "E2M1", "FP4 E2M1", 2, 1, 1, false, false)),
    with_values(make_int8()),
};
static_assert(kFormatTable[0].max_normal == 448.0f && kFormatTable[1].max_normal == 57344.0f);
static_assert(kFormatTable[2].max_normal == 28.0f && kFormatTable[3].max_normal == 7.5f);
static_assert(kFormatTable[4].max_normal == 6.0f && kFormatTable[5].max_normal == 127.0f / 64);

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

int floor_log2_u128(unsigned __int128 v) {
  const uint64_t hi = static_cast<uint64_t>(v >> 64);
  if (hi) return 127 - __builtin_clzll(hi);
  return 63 - __builtin_clzll(static_cast<uint64_t>(v));
}

}  // namespace

const FormatInfo& format_info(MxFormat f) { return kFormatTable[static_cast<int>(f)]; }
const char* format_name(MxFormat f) { return format_info(f).name; }

std::optional<MxFormat> parse_format(std::string_view s) {
  const std::string l = lower(s);
  struct Alias {
    const char* name;
    MxFormat f;
  };
  static const Alias aliases[] = {
      {"e4m3", MxFormat::E4M3},      {"fp8_e4m3", MxFormat::E4M3}, {"mxfp8_e4m3", MxFormat::E4M3},
      {"mxfp8", MxFormat::E4M3},     {"e5m2", MxFormat::E5M2},     {"fp8_e5m2", MxFormat::E5M2},
      {"mxfp8_e5m2", MxFormat::E5M2}, {"e3m2", MxFormat::E3M2},    {"fp6_e3m2", MxFormat::E3M2},
      {"mxfp6_e3m2", MxFormat::E3M2}, {"e2m3", MxFormat::E2M3},    {"fp6_e2m3", MxFormat::E2M3},
      {"mxfp6_e2m3", MxFormat::E2M3}, {"mxfp6", MxFormat::E2M3},   {"e2m1", MxFormat::E2M1},
      {"fp4", MxFormat::E2M1},       {"fp4_e2m1", MxFormat::E2M1}, {"mxfp4", MxFormat::E2M1},
      {"mxfp4_e2m1", MxFormat::E2M1}, {"int8", MxFormat::INT8},    {"mxint8", MxFormat::INT8},
  };
  for (const auto& a : aliases)
    if (l == a.name) return a.f;
  return std::nullopt;
}

const char* scale_rule_name(ScaleRule r) {
  switch (r) {
    case ScaleRule::FLOOR: return "FLOOR";
    case ScaleRule::CEIL: return "CEIL";
    case ScaleRule::EVEN: return "EVEN";
    case ScaleRule::RCEIL: return "RCEIL";
  }
  return "?";
}

std::optional<ScaleRule> parse_scale_rule(std::string_view s) {
  const std::string l = lower(s);
  if (l == "floor") return ScaleRule::FLOOR;
  if (l == "ceil") return ScaleRule::CEIL;
  if (l == "even") return ScaleRule::EVEN;
  if (l == "rceil") return ScaleRule::RCEIL;
  return std::nullopt;
}


uint16_t fp32_to_bf16(float x) {
  const uint32_t b = fp32_bits(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>((b + rounding) >> 16);
}
float bf16_to_fp32(uint16_t b) { return fp32_from_bits(static_cast<uint32_t>(b) << 16); }

float decode_scale(uint8_t code) {
  if (code == kScaleNaN) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(code) - kScaleBias);
}

float round_to_fp32(bool negative, unsigned __int128 magnitude, int exp) {
  const uint32_t sign = negative ? 0x80000000u : 0u;
  if (magnitude == 0) return fp32_from_bits(sign);
  const int p = floor_log2_u128(magnitude);
  const int L = p + exp;  // floor(log2 |value|)
  if (L > 127) return fp32_from_bits(sign | 0x7f800000u);
  // The FP32 unit (ulp) exponent of the target binade; -149 in the subnormal range.
  const int qe = std::max(L - 23, -149);
  const int shift = qe - exp;  // how far right the magnitude must move
  uint64_t m;
  if (shift <= 0) {
    m = static_cast<uint64_t>(magnitude) << (-shift);  // exact, < 2^24
  } else if (shift > 127) {
    m = 0;  // below half of the smallest subnormal: the magnitude has p <= 127 < shift - 1
  } else {
    const unsigned __int128 q = magnitude >> shift;
    const unsigned __int128 rem = magnitude - (q << shift);
    const unsigned __int128 half = static_cast<unsigned __int128>(1) << (shift - 1);
    m = static_cast<uint64_t>(q);
    if (rem > half || (rem == half && (m & 1))) ++m;
  }
  int e = qe;
  if (m >> 24) {  // rounding carried into the next binade
    m >>= 1;
    ++e;
  }
  if (m == 0) return fp32_from_bits(sign);
  if (m < (1u << 23)) return fp32_from_bits(sign | static_cast<uint32_t>(m));  // subnormal
  const int biased = e + 23 + 127;
  if (biased >= 255) return fp32_from_bits(sign | 0x7f800000u);
  return fp32_from_bits(sign | (static_cast<uint32_t>(biased) << 23) |
                        (static_cast<uint32_t>(m) & 0x7fffffu));
}

ElementValue decode_element_exact(MxFormat f, uint8_t code) {
  const FormatInfo& fi = format_info(f);
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
    if (mfield == 0)
      v.is_inf = true;
    else
      v.is_nan = true;
    return v;
  }
  if (!fi.has_inf && fi.has_nan && efield == top && mfield == (1u << m) - 1u) {  // E4M3 NaN
    v.is_nan = true;
    return v;
  }
  v.magnitude = efield == 0 ? mfield : ((1u << m) | mfield) << (efield - 1);
  return v;
}

float decode_element(MxFormat f, uint8_t code) {
  const ElementValue v = decode_element_exact(f, code);
  if (v.is_nan) return std::numeric_limits<float>::quiet_NaN();
  if (v.is_inf) return v.negative ? -INFINITY : INFINITY;
  return round_to_fp32(v.negative, v.magnitude, format_info(f).quantum_exp);
}

namespace {

// Encodes a magnitude already on the grid (in units of 2^quantum_exp, <= max_magnitude).
inline uint8_t code_from_magnitude(const FormatInfo& fi, bool negative, uint32_t mag) {
  if (fi.is_int) {
    const int q = negative ? -static_cast<int>(mag) : static_cast<int>(mag);
    return static_cast<uint8_t>(static_cast<int8_t>(q));
  }
  const int m = fi.mbits;
  uint32_t c;
  if (mag < (1u << m)) {
    c = mag;  // subnormal (or zero)
  } else {
    const int p = 31 - __builtin_clz(mag);
    const uint32_t efield = static_cast<uint32_t>(p - m + 1);
    const uint32_t mfield = (mag >> (p - m)) - (1u << m);
    c = (efield << m) | mfield;
  }
  if (negative) c |= 1u << (fi.bits - 1);
  return static_cast<uint8_t>(c);
}

uint8_t nan_code(const FormatInfo& fi) {
  // OFP8: E4M3 NaN is S.1111.111, E5M2 canonical quiet NaN S.11111.11.
  return static_cast<uint8_t>((1u << (fi.bits - 1)) - 1u);
}
uint8_t inf_code(const FormatInfo& fi, bool negative) {  // E5M2 only
  const uint8_t c = static_cast<uint8_t>(((1u << fi.ebits) - 1u) << fi.mbits);
  return negative ? static_cast<uint8_t>(c | 0x80u) : c;
}

}  // namespace

uint8_t encode_element_scaled(MxFormat f, float x, int shift, Overflow ov,
                              bool int8_allow_minus128) {
  const FormatInfo& fi = format_info(f);
  const uint32_t bits = fp32_bits(x);
  const bool neg = bits >> 31;
  const uint32_t efield = (bits >> 23) & 0xffu;
  const uint32_t frac = bits & 0x7fffffu;
  const bool fp8_ovf = (ov == Overflow::OVF) && fi.has_nan;
  auto overflowed = [&]() -> uint8_t {
    if (fp8_ovf) return fi.has_inf ? inf_code(fi, neg) : static_cast<uint8_t>(nan_code(fi) | (neg ? 0x80 : 0));
    if (fi.is_int && neg && int8_allow_minus128) return 0x80;
    return code_from_magnitude(fi, neg, fi.max_magnitude);
  };
  if (efield == 0xff) {
    if (frac != 0) {  // NaN: the format's NaN, else +max (as NVIDIA's cuda_fp6.h/cuda_fp4.h do)
      if (fi.has_nan) return nan_code(fi);
      return code_from_magnitude(fi, false, fi.max_magnitude);
    }
    return overflowed();  // Inf: SAT -> max, OVF -> Inf/NaN
  }
  // |x| = mant * 2^e exactly.
  uint64_t mant = efield ? (frac | 0x800000u) : frac;
  int e = efield ? static_cast<int>(efield) - 150 : -149;
  if (mant == 0) return code_from_magnitude(fi, neg, 0);
  e -= shift;
  const int L = (63 - __builtin_clzll(mant)) + e;  // floor(log2 |x * 2^-shift|)
  // Anything at or above 2^(emax+2) overflows for every format; stop before shifts get huge.
  if (L > fi.emax + 1) return overflowed();
  // ulp exponent of the target binade on the element grid.
  const int qe = fi.is_int ? fi.quantum_exp : std::max(L - fi.mbits, fi.quantum_exp);
  const int rs = qe - e;  // right shift of mant onto the grid
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
  const uint64_t mag = q << (qe - fi.quantum_exp);
  if (fi.is_int) {
    if (neg && int8_allow_minus128 && mag >= 128) return 0x80;
    if (mag > fi.max_magnitude) return overflowed();
    return code_from_magnitude(fi, neg, static_cast<uint32_t>(mag));
  }
  if (mag > fi.max_magnitude) return overflowed();
  return code_from_magnitude(fi, neg, static_cast<uint32_t>(mag));
}

uint8_t encode_element(MxFormat f, float x, Overflow ov, bool int8_allow_minus128) {
  return encode_element_scaled(f, x, 0, ov, int8_allow_minus128);
}

}  // namespace dmx
