// Block quantization (the OCP v1.0 conversion with this project's policy knobs) and packing.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dmx/golden.h"

namespace dmx {

int floor_log2(float x) {
  const uint32_t b = fp32_bits(x) & 0x7fffffffu;
  const uint32_t e = b >> 23;
  if (e != 0) return static_cast<int>(e) - 127;
  return -149 + (31 - __builtin_clz(b));  // subnormal: the leading set bit of the fraction
}

namespace {

bool is_power_of_two(float x) {
  const uint32_t b = fp32_bits(x) & 0x7fffffffu;
  if (b >> 23) return (b & 0x7fffffu) == 0;
  return (b & (b - 1)) == 0;
}

// floor(log2 amax) after rounding amax to `mbits` fraction bits, half away from zero: the
// binade amax lands in once it is put on a grid as coarse as the element's (ScaleRule::EVEN).
int floor_log2_rounded(float amax, int mbits) {
  const int L = floor_log2(amax);
  // amax = mant * 2^(L-23) with mant in [2^23, 2^24) after normalizing subnormals.
  uint32_t b = fp32_bits(amax) & 0x7fffffffu;
  uint64_t mant = (b >> 23) ? ((b & 0x7fffffu) | 0x800000u) : static_cast<uint64_t>(b)
                                                                   << (-149 - (L - 23));
  const int drop = 23 - mbits;
  mant += 1ull << (drop - 1);
  return (mant >> 24) ? L + 1 : L;
}

// Smallest s with amax * 2^-s <= max_normal, exactly.
int rceil_exponent(const FormatInfo& fi, float amax) {
  // amax <= max_mag * 2^(q + s)  <=>  s >= log2(amax / max_mag) - q.
  // Start from the floor estimate and correct with exact comparisons.
  const int L = floor_log2(amax);
  const int Lm = 31 - __builtin_clz(fi.max_magnitude);
  int s = L - Lm - fi.quantum_exp - 1;
  auto fits = [&](int sc) {
    // amax * 2^-sc <= max_mag * 2^q, both sides exact via round_to_fp32-free integer compare.
    // amax = mant * 2^ae.
    uint32_t b = fp32_bits(amax) & 0x7fffffffu;
    uint64_t mant = (b >> 23) ? ((b & 0x7fffffu) | 0x800000u) : b;
    int ae = (b >> 23) ? static_cast<int>(b >> 23) - 150 : -149;
    // compare mant * 2^(ae - sc) with max_mag * 2^q
    int d = (ae - sc) - fi.quantum_exp;
    unsigned __int128 lhs = mant, rhs = fi.max_magnitude;
    if (d >= 0)
      lhs <<= d;
    else
      rhs <<= -d;
    return lhs <= rhs;
  };
  while (!fits(s)) ++s;
  while (fits(s - 1)) --s;
  return s;
}

}  // namespace

int shared_exponent(MxFormat f, float amax, ScaleRule rule) {
  const FormatInfo& fi = format_info(f);
  if (amax == 0.0f) return -kScaleBias;
  int s = 0;
  switch (rule) {
    case ScaleRule::FLOOR: s = floor_log2(amax) - fi.emax; break;
    case ScaleRule::CEIL:
      s = floor_log2(amax) + (is_power_of_two(amax) ? 0 : 1) - fi.emax;
      break;
    case ScaleRule::EVEN: s = floor_log2_rounded(amax, fi.mbits) - fi.emax; break;
    case ScaleRule::RCEIL: s = rceil_exponent(fi, amax); break;
  }
  return std::clamp(s, -kScaleBias, kScaleBias);
}

MxBlock quantize_block(MxFormat f, const float* v, const QuantizeOptions& opt) {
  const FormatInfo& fi = format_info(f);
  MxBlock out;
  bool non_finite = false;
  float amax = 0.0f;
  for (int i = 0; i < kBlockSize; ++i) {
    if (!std::isfinite(v[i])) {
      non_finite = true;
      continue;
    }
    amax = std::max(amax, std::fabs(v[i]));
  }
  if (non_finite && (opt.non_finite == NonFinitePolicy::NAN_SCALE || !fi.has_nan)) {
    out.scale = kScaleNaN;
    return out;  // codes stay 0: a NaN scale makes every value NaN whatever they hold
  }
  const int s = shared_exponent(f, amax, opt.scale_rule);
  out.scale = static_cast<uint8_t>(s + kScaleBias);
  for (int i = 0; i < kBlockSize; ++i)
    out.codes[i] = encode_element_scaled(f, v[i], s, opt.overflow, opt.int8_allow_minus128);
  return out;
}

void dequantize_block(MxFormat f, const MxBlock& b, float* out) {
  const FormatInfo& fi = format_info(f);
  for (int i = 0; i < kBlockSize; ++i) {
    if (b.scale == kScaleNaN) {
      out[i] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const ElementValue e = decode_element_exact(f, b.codes[i]);
    if (e.is_nan)
      out[i] = std::numeric_limits<float>::quiet_NaN();
    else if (e.is_inf)
      out[i] = e.negative ? -INFINITY : INFINITY;
    else
      out[i] = round_to_fp32(e.negative, e.magnitude,
                             fi.quantum_exp + static_cast<int>(b.scale) - kScaleBias);
  }
}

void quantize_row(MxFormat f, const float* v, size_t n, uint8_t* scales, uint8_t* codes,
                  const QuantizeOptions& opt) {
  if (n % kBlockSize) throw std::invalid_argument("quantize_row: length not a multiple of 32");
  for (size_t j = 0; j < n / kBlockSize; ++j) {
    const MxBlock b = quantize_block(f, v + j * kBlockSize, opt);
    scales[j] = b.scale;
    std::copy(b.codes.begin(), b.codes.end(), codes + j * kBlockSize);
  }
}

void dequantize_row(MxFormat f, const uint8_t* scales, const uint8_t* codes, size_t n,
                    float* out) {
  if (n % kBlockSize) throw std::invalid_argument("dequantize_row: length not a multiple of 32");
  for (size_t j = 0; j < n / kBlockSize; ++j) {
    MxBlock b;
    b.scale = scales[j];
    std::copy(codes + j * kBlockSize, codes + (j + 1) * kBlockSize, b.codes.begin());
    dequantize_block(f, b, out + j * kBlockSize);
  }
}

size_t packed_bytes(MxFormat f, size_t n) {
  switch (format_bits(f)) {
    case 4: return (n + 1) / 2;
    case 6: return (n + 3) / 4 * 3;
    default: return n;
  }
}

void pack_codes(MxFormat f, const uint8_t* codes, size_t n, uint8_t* packed) {
  switch (format_bits(f)) {
    case 4:
      for (size_t i = 0; i < n; i += 2) {
        const uint8_t hi = i + 1 < n ? codes[i + 1] & 0xf : 0;
        packed[i / 2] = static_cast<uint8_t>((codes[i] & 0xf) | (hi << 4));
      }
      break;
    case 6:
      for (size_t i = 0; i < n; i += 4) {
        uint32_t w = 0;
        for (size_t k = 0; k < 4 && i + k < n; ++k) w |= static_cast<uint32_t>(codes[i + k] & 0x3f) << (6 * k);
        uint8_t* p = packed + i / 4 * 3;
        p[0] = static_cast<uint8_t>(w);
        p[1] = static_cast<uint8_t>(w >> 8);
        p[2] = static_cast<uint8_t>(w >> 16);
      }
      break;
    default: std::copy(codes, codes + n, packed);
  }
}

void unpack_codes(MxFormat f, const uint8_t* packed, size_t n, uint8_t* codes) {
  switch (format_bits(f)) {
    case 4:
      for (size_t i = 0; i < n; ++i) codes[i] = (packed[i / 2] >> (4 * (i & 1))) & 0xf;
      break;
    case 6:
      for (size_t i = 0; i < n; i += 4) {
        const uint8_t* p = packed + i / 4 * 3;
        const uint32_t w = p[0] | (p[1] << 8) | (static_cast<uint32_t>(p[2]) << 16);
        for (size_t k = 0; k < 4 && i + k < n; ++k) codes[i + k] = (w >> (6 * k)) & 0x3f;
      }
      break;
    default: std::copy(packed, packed + n, codes);
  }
}

}  // namespace dmx
