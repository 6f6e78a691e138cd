// Block quantization (the OCP v1.0 conversion with this project's policy knobs) and packing; the
// scale rules and the element rounding are the MX core's (dmx/mx_core.h).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dmx/golden.h"

namespace dmx {

int floor_log2(float x) { return core::floor_log2_bits(fp32_bits(x) & 0x7fffffffu); }

int shared_exponent(MxFormat f, float amax, ScaleRule rule) {
  return core::shared_exponent(format_info(f), fp32_bits(amax) & 0x7fffffffu, rule);
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

void dequantize_row(MxFormat f, const uint8_t* scales, const uint8_t* codes, size_t n, float* out) {
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
    case 4:
      return (n + 1) / 2;
    case 6:
      return (n + 3) / 4 * 3;
    default:
      return n;
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
        for (size_t k = 0; k < 4 && i + k < n; ++k)
          w |= static_cast<uint32_t>(codes[i + k] & 0x3f) << (6 * k);
        uint8_t* p = packed + i / 4 * 3;
        p[0] = static_cast<uint8_t>(w);
        p[1] = static_cast<uint8_t>(w >> 8);
        p[2] = static_cast<uint8_t>(w >> 16);
      }
      break;
    default:
      std::copy(codes, codes + n, packed);
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
    default:
      std::copy(packed, packed + n, codes);
  }
}

}  // namespace dmx
